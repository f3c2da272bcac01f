/**
 * The `haven` command. Each file in ./commands registers one command (or a group) on the
 * program; this file wires global options and turns every failure into a message and the exit
 * code of cli/exit-codes.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { asHavenError, type HavenError } from '../core/errors.ts';
import { installPath } from '../core/package-root.ts';
import { afterRun } from './after-run.ts';
import { commandModuleName } from './command-name.ts';
import { CliContext, type GlobalOptions } from './context.ts';
import { EXIT_CODES, EXIT_OK, exitCodeFor } from './exit-codes.ts';
import { commandPath, usageError } from './usage-errors.ts';

/** What a command module exports as default. */
export type RegisterCommand = (program: Command, context: () => CliContext) => void;

const COMMANDS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'commands');
/** `.ts` from the source tree, `.js` from the compiled one (scripts/build). */
const EXT = extname(fileURLToPath(import.meta.url));

/**
 * The module of the command `argv` names, when there is one: only it is loaded, so a command
 * does not pay for importing every other (a receiver is spawned for each replication, and the
 * load is most of its start-up time). Help and unknown names load them all.
 */
function commandModule(argv: readonly string[]): string | undefined {
  const name = commandModuleName(argv);
  const file = `${name}${EXT}`;
  return name !== undefined && existsSync(join(COMMANDS_DIR, file)) ? file : undefined;
}

async function loadCommands(
  program: Command,
  context: () => CliContext,
  argv: readonly string[],
): Promise<void> {
  const one = commandModule(argv);
  const files = one
    ? [one]
    : readdirSync(COMMANDS_DIR)
        .filter((f) => f.endsWith(EXT) && !f.endsWith(`.test${EXT}`))
        .sort();
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(COMMANDS_DIR, f)).href)) as { default?: RegisterCommand };
    if (typeof mod.default === 'function') mod.default(program, context);
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(installPath('package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function reportError(ctx: CliContext | undefined, err: HavenError, json: boolean): void {
  const out = ctx?.stderr ?? process.stderr;
  if (json) {
    (ctx?.stdout ?? process.stdout).write(`${JSON.stringify({ error: err.toJSON() }, null, 2)}\n`);
  }
  out.write(`haven: error [${err.code}]: ${err.message}\n`);
  if (err.hint) out.write(`  ${err.hint}\n`);
  if (ctx?.log.filePath) out.write(`  log: ${ctx.log.filePath}\n`);
}

/** The program; main() reports commander's errors as Haven's (usage-errors.ts), with a code and a hint. */
function newProgram(): Command {
  return new Command('haven')
    .description('Disaster recovery for KVM/libvirt servers: consistent, bootable copies at a DR site')
    .version(packageVersion(), '-V, --version')
    .option('-v, --verbose', 'more detail on stderr')
    .option('-d, --debug', 'everything on stderr, including protocol traces')
    .option('-q, --quiet', 'no progress on stderr (bars on a terminal, periodic lines elsewhere)')
    .option('-c, --config <file>', 'configuration file (default /etc/haven/haven.yaml, or $HAVEN_CONFIG)')
    .option('--log-file <file>', 'write this run’s log here instead of the log directory')
    .configureOutput({ outputError: () => {} })
    .exitOverride();
}

/**
 * Every command as the CLI defines it, without running any: what hints and documents that name
 * `haven …` commands are checked against (cli/hints.test.ts).
 */
export async function commandTree(): Promise<Command> {
  const program = newProgram();
  await loadCommands(program, () => new CliContext(program.opts<GlobalOptions>()), []);
  return program;
}

/**
 * Runs the command line `argv` and gives its exit code. `commands` are the registrations of the
 * command's own module when the caller has it already (a compiled command bundle, start.ts);
 * otherwise the module is found in ./commands.
 */
export async function main(argv: string[], commands?: readonly RegisterCommand[]): Promise<number> {
  let ctx: CliContext | undefined;
  const program = newProgram();
  const context = (): CliContext => {
    ctx ??= new CliContext(program.opts<GlobalOptions>());
    return ctx;
  };
  if (commands) for (const register of commands) register(program, context);
  else await loadCommands(program, context, argv);
  program.commands.forEach(function override(c: Command) {
    c.exitOverride();
    c.commands.forEach(override);
  });

  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? EXIT_OK);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) {
        return EXIT_OK;
      }
      // A group named without its subcommand: commander has printed the group's help.
      if (err.code === 'commander.help') return EXIT_CODES.usage;
      reportError(ctx, usageError(err, commandPath(program, argv)), argv.includes('--json'));
      return EXIT_CODES.usage;
    }
    const he = asHavenError(err);
    if (he.kind === 'internal') ctx?.log.debug('internal error', { stack: (err as Error)?.stack });
    reportError(ctx, he, argv.includes('--json'));
    // Already shown on stderr by reportError; the run's log file gets the full record.
    ctx?.log.debug(he.message, { code: he.code, details: he.details });
    return exitCodeFor(he.kind);
  } finally {
    if (ctx) await afterRun(ctx);
    ctx?.close();
  }
}
