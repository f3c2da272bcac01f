/**
 * Which command module a command line runs, read from the words alone: the compiled start
 * (start.ts) picks the command's own bundle with it before anything else loads, and main.ts loads
 * only that module. Nothing here may import more than this file: it is the first thing a compiled
 * `haven` loads.
 */

/** Global options that take a value in the next argument. */
export const VALUE_OPTIONS: ReadonlySet<string> = new Set(['-c', '--config', '--log-file']);

/** Commands registered by a module of another name. */
const COMMAND_MODULE: Readonly<Record<string, string>> = {
  priority: 'activate',
  deactivate: 'activate',
  'failback-receive': 'failback',
};

/**
 * The name of the module (in ./commands, without its extension) of the command `argv` names, or
 * undefined when it names none (help, `--version`). The name is checked for shape only: whether
 * such a module exists is the caller's question.
 */
export function commandModuleName(argv: readonly string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    const name = COMMAND_MODULE[a] ?? a;
    return /^[a-z-]+$/.test(name) ? name : undefined;
  }
  return undefined;
}
