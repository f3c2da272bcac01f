/**
 * What the bash and zsh completions know, flattened per command path: the subcommands, the
 * options (with where their values come from) and the positional arguments. Both scripts are
 * tables of `case` branches over these, plus one walker each (bash.ts, zsh.ts).
 */
import { allCommands, type CommandDoc, type OptionDoc, type ValueSource } from './model.ts';

/** How a value is completed: a source name the scripts know, or a fixed word list. */
export type Completer =
  | 'servers'
  | 'jobs'
  | 'targets'
  | 'drills'
  | 'files'
  | 'dirs'
  | 'none'
  | { words: string[] };

export interface ShellOption {
  names: string[];
  description: string;
  /** undefined: a switch (takes no value). */
  value?: Completer;
}

export interface ShellCommand {
  /** `job run`; '' for the program. */
  key: string;
  subcommands: { name: string; description: string }[];
  options: ShellOption[];
  /** One per positional argument; the last repeats when `variadic`. */
  args: Completer[];
  variadic: boolean;
}

function completer(values: ValueSource | undefined): Completer {
  if (!values) return 'none';
  return values.kind === 'choices' ? { words: [...values.choices] } : values.kind;
}

function shellOption(o: OptionDoc): ShellOption {
  const opt: ShellOption = { names: o.names, description: o.description };
  if (o.value !== undefined) opt.value = completer(o.values);
  return opt;
}

/**
 * Every command path with what may follow it. Options of the program are accepted after a
 * command name too (commander reads them anywhere), so every path offers them.
 */
export function shellCommands(program: CommandDoc): ShellCommand[] {
  const globals = program.options.map(shellOption);
  return allCommands(program).map((c) => {
    const own = c.path.length === 0 ? [] : c.options.map(shellOption);
    const seen = new Set(own.flatMap((o) => o.names));
    return {
      key: c.path.join(' '),
      subcommands: c.commands.map((s) => ({ name: s.path.at(-1) ?? '', description: s.description })),
      options: [...own, ...globals.filter((g) => g.names.every((n) => !seen.has(n)))],
      args: c.arguments.map((a) => completer(a.values)),
      variadic: c.arguments.at(-1)?.variadic ?? false,
    };
  });
}

/** A word for a single-quoted shell string. */
export function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
