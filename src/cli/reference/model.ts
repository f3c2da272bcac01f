/**
 * The command tree as plain data, read from the commander program main.ts builds: the man pages
 * and shell completions are generated from it (scripts/build), so a flag added to a command
 * appears in both without anyone remembering to write it down.
 */
import type { EventEmitter } from 'node:events';
import { type Argument, type Command, Help, type Option } from 'commander';

/**
 * What a value can be completed from: names libvirt knows (`servers`), names from the
 * configuration (`jobs`, `targets`, `drills`), the file system, or a fixed list.
 */
export type NamedSource = 'servers' | 'jobs' | 'targets' | 'drills' | 'files' | 'dirs';
export type ValueSource = { kind: NamedSource } | { kind: 'choices'; choices: readonly string[] };

export interface OptionDoc {
  /** As written in the definition: `-c, --config <file>`. */
  flags: string;
  /** `--config`, `-c` (long first); every spelling the parser accepts. */
  names: string[];
  /** The placeholder of its value (`file`), undefined for a switch. */
  value?: string;
  description: string;
  defaultValue?: string;
  mandatory: boolean;
  /** Takes several values (`<opt...>`). */
  variadic: boolean;
  values?: ValueSource;
}

export interface ArgumentDoc {
  name: string;
  required: boolean;
  variadic: boolean;
  description: string;
  values?: ValueSource;
}

export interface CommandDoc {
  /** Words after `haven`: `['job', 'run']`; empty for the program itself. */
  path: string[];
  description: string;
  /** The usage line after the command path, as commander prints it. */
  usage: string;
  arguments: ArgumentDoc[];
  options: OptionDoc[];
  commands: CommandDoc[];
  /** Text the command adds below its help (`addHelpText('after', …)`): examples, notes. */
  helpAfter: string;
}

/** Value sources named by an argument or option placeholder or by the option itself. */
const BY_OPTION: Record<string, NamedSource> = {
  '--server': 'servers',
  '--job': 'jobs',
  '--target': 'targets',
  '--drill': 'drills',
};
const BY_ARGUMENT: Record<string, NamedSource> = {
  server: 'servers',
  name: 'servers',
  job: 'jobs',
};
const BY_PLACEHOLDER: Record<string, NamedSource> = {
  target: 'targets',
  file: 'files',
  path: 'dirs',
  dir: 'dirs',
};

function optionValues(o: Option, value: string | undefined): ValueSource | undefined {
  if (o.argChoices && o.argChoices.length > 0) return { kind: 'choices', choices: o.argChoices };
  if (value === undefined) return undefined;
  const kind = (o.long && BY_OPTION[o.long]) ?? BY_PLACEHOLDER[value];
  return kind ? { kind } : undefined;
}

function argumentValues(a: Argument): ValueSource | undefined {
  if (a.argChoices && a.argChoices.length > 0) return { kind: 'choices', choices: a.argChoices };
  const kind = BY_ARGUMENT[a.name()];
  return kind ? { kind } : undefined;
}

function describeOption(o: Option): OptionDoc {
  const placeholder = /[<[]([^>\].]+)(?:\.\.\.)?[>\]]/.exec(o.flags)?.[1];
  const value = o.required || o.optional ? placeholder : undefined;
  const values = optionValues(o, value);
  const doc: OptionDoc = {
    flags: o.flags,
    names: [o.long, o.short].filter((n): n is string => Boolean(n)),
    description: o.description,
    mandatory: o.mandatory,
    variadic: o.variadic,
  };
  if (value !== undefined) doc.value = value;
  // A negated switch (`--no-verify`) has `true` as its default: not worth printing.
  if (o.defaultValue !== undefined && !o.negate) doc.defaultValue = String(o.defaultValue);
  if (values) doc.values = values;
  return doc;
}

function describeArgument(a: Argument): ArgumentDoc {
  const doc: ArgumentDoc = {
    name: a.name(),
    required: a.required,
    variadic: a.variadic,
    description: a.description,
  };
  const values = argumentValues(a);
  if (values) doc.values = values;
  return doc;
}

/**
 * What `addHelpText('after', …)` prints below the command's help. Commander emits it as the
 * `afterHelp` event with a context holding `write`, which is how this collects it.
 */
function helpAfter(cmd: Command): string {
  let text = '';
  const write = (s: string) => {
    text += s;
  };
  // A Command is an EventEmitter at run time; its type declarations leave that out.
  (cmd as unknown as EventEmitter).emit('afterHelp', { error: false, command: cmd, write });
  return text.trim();
}

function describe(cmd: Command, path: string[], help: Help): CommandDoc {
  return {
    path,
    description: cmd.description(),
    usage: cmd.usage(),
    arguments: cmd.registeredArguments.map(describeArgument),
    options: help.visibleOptions(cmd).map(describeOption),
    // The implicit `help` command is left out: `haven help x` is `haven x --help`.
    commands: help
      .visibleCommands(cmd)
      .filter((c) => c.name() !== 'help')
      .map((c) => describe(c, [...path, c.name()], help)),
    helpAfter: helpAfter(cmd),
  };
}

/** The whole tree below `program` (which must have every command module loaded). */
export function describeProgram(program: Command): CommandDoc {
  return describe(program, [], new Help());
}

/** Every command of the tree, depth first, the program itself first. */
export function allCommands(root: CommandDoc): CommandDoc[] {
  return [root, ...root.commands.flatMap(allCommands)];
}
