/**
 * Flags several commands share, defined once so that the same concept has the same name, value
 * and meaning everywhere (docs/cli.md lists the rules; cli/vocabulary.test.ts checks them over
 * the whole command tree): the libvirt URI, the generation, the failover network mapping, and
 * the examples at the end of every help page.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { ValueProblem } from '../core/config-values.ts';
import { UsageError } from '../core/errors.ts';
import { MAC_POLICIES, type MacPolicy, type NetworkMapping, parseMapEntry } from '../core/network-map.ts';

/**
 * `--connect URI`, as virsh names it, and `--uri`, its old name in some commands: hidden, still
 * accepted, with a warning on stderr. The URI is this host's libvirt for everything the command
 * does, so it also becomes $HAVEN_LIBVIRT_URI of the process: a job run or the daemon reaches
 * libvirt from many places, all of which default to it.
 */
export function connectOption(cmd: Command, where = 'on this host'): Command {
  return cmd
    .option('--connect <uri>', `libvirt URI ${where} (default $HAVEN_LIBVIRT_URI, else qemu:///system)`)
    .addOption(new Option('--uri <uri>', 'deprecated: use --connect').hideHelp())
    .hook('preAction', (_self, action) => {
      const o = action.opts<{ uri?: string; connect?: string }>();
      if (o.uri !== undefined) {
        process.stderr.write('haven: warning: --uri is deprecated and will go: use --connect\n');
        if (o.connect === undefined) action.setOptionValue('connect', o.uri);
      }
      const uri = action.getOptionValue('connect') as string | undefined;
      if (uri !== undefined) process.env.HAVEN_LIBVIRT_URI = uri;
    });
}

/** A generation as a sequence number: `1` or `_1` is the newest, as `haven images` lists them. */
export function parseSeq(v: string): number {
  const n = Number(v.replace(/^_/, ''));
  if (!/^_?\d+$/.test(v) || !Number.isInteger(n) || n < 1 || n > 1000) {
    throw new InvalidArgumentError(
      `expected a generation from 1 (newest) up, as haven images lists them (1 or _1), got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

/** `--generation K` (default 1, the newest): what activate, drill and restore boot or write. */
export function generationOption(cmd: Command, what: string): Command {
  return cmd.option(
    '--generation <k>',
    `generation to ${what}: 1 = newest (default), 2 = the one before, … (as haven images lists them)`,
    parseSeq,
  );
}

function collectMap(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  try {
    const [from, to] = parseMapEntry(value);
    return { ...previous, [from]: to };
  } catch (e) {
    if (e instanceof ValueProblem) throw new InvalidArgumentError(e.message);
    throw e;
  }
}

/** `--network-map FROM=TO` (repeatable) and `--mac keep|generate`: failover network mapping. */
export function networkOptions(cmd: Command, macDefault: string): Command {
  return cmd
    .option(
      '--network-map <from=to>',
      'join this bridge or network instead of FROM (repeatable; over the configuration’s networks.map): prod-br=dr-br, network:default=network:dr-lan',
      collectMap,
    )
    .addOption(
      new Option(
        '--mac <policy>',
        `keep the interfaces’ MAC addresses, or let libvirt generate new ones (default ${macDefault})`,
      ).choices(MAC_POLICIES),
    );
}

/** The mapping the flags give, as the last layer over the configuration; undefined: none. */
export function networkFlags(flags: {
  networkMap?: Record<string, string>;
  mac?: string;
}): NetworkMapping | undefined {
  if (flags.networkMap === undefined && flags.mac === undefined) return undefined;
  return { map: flags.networkMap ?? {}, mac: flags.mac as MacPolicy | undefined };
}

/** One example: the command line, and what it does. */
export type Example = readonly [command: string, what: string];

/**
 * An "Examples:" section at the end of the help page (and so of the man page made from it).
 * Every line must parse against the command's own definition (cli/vocabulary.test.ts).
 */
export function examples(cmd: Command, list: readonly Example[]): Command {
  const text = list.map(([command, what]) => `  # ${what}\n  $ ${command}`).join('\n\n');
  return cmd.addHelpText('after', `\nExamples:\n${text}\n`);
}

/** A whole-number flag's value, or undefined when not given; out of range is a usage error. */
export function intFlag(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}
