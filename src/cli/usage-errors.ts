/**
 * What commander finds wrong with a command line (an unknown option, a missing argument, a value
 * not among the choices) as a Haven error like every other: a stable `USAGE_*` code, the message
 * without commander's "error: " prefix, a hint naming the command's own help page (and the near
 * miss commander suggests), and so `[CODE]` on stderr and `{"error": …}` with `--json`
 * (docs/exit-codes.md, exit 2).
 */
import type { Command, CommanderError } from 'commander';
import { HavenError } from '../core/errors.ts';
import { VALUE_OPTIONS } from './command-name.ts';
import type { CLI_CODES } from './error-codes.ts';

type CliCode = keyof typeof CLI_CODES;

/** commander's error codes → Haven's (error-codes.ts lists them, and so docs/errors.md). */
export const USAGE_CODES: Readonly<Record<string, CliCode>> = {
  'commander.unknownOption': 'USAGE_UNKNOWN_OPTION',
  'commander.unknownCommand': 'USAGE_UNKNOWN_COMMAND',
  'commander.missingArgument': 'USAGE_MISSING_ARGUMENT',
  'commander.optionMissingArgument': 'USAGE_MISSING_VALUE',
  'commander.missingMandatoryOptionValue': 'USAGE_MISSING_OPTION',
  'commander.invalidArgument': 'USAGE_INVALID_VALUE',
  'commander.excessArguments': 'USAGE_EXCESS_ARGUMENTS',
  'commander.conflictingOption': 'USAGE_CONFLICTING_OPTIONS',
};

/** The words of the command `argv` names (`['job', 'run']`), as far as the tree knows them. */
export function commandPath(program: Command, argv: readonly string[]): string[] {
  const path: string[] = [];
  let cmd = program;
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_OPTIONS.has(a) && cmd === program) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    path.push(sub.name());
    cmd = sub;
    if (sub.commands.length === 0) break;
  }
  return path;
}

export function usageError(err: CommanderError, path: readonly string[]): HavenError {
  const [first = err.message, ...rest] = err.message.replace(/^error: /, '').split('\n');
  // commander puts its near miss on a line of its own: "(Did you mean --store?)".
  const suggestion = rest
    .join(' ')
    .trim()
    .replace(/^\((.*)\)$/, '$1');
  const help = `\`haven ${[...path, '--help'].join(' ')}\``;
  const what = path.length ? 'the options and examples' : 'the commands';
  const hint = `${suggestion ? `${suggestion} ` : ''}Run ${help} for ${what}.`;
  const code: CliCode = USAGE_CODES[err.code] ?? 'USAGE_ERROR';
  return new HavenError(code, first.trim(), {
    kind: 'usage',
    hint,
    details: { command: path.join(' '), commander: err.code },
  });
}
