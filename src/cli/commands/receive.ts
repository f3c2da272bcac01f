/**
 * `haven receive`: the target side of replication. Serves the stream protocol over stdin/stdout
 * (`--stdio`, run by a sender locally or through ssh) or as a TLS listener (`--listen`), writing
 * into the store at --store (created if missing). With --stdio nothing but frames goes to stdout;
 * messages go to stderr (which ssh carries back to the sender's log) and to the run log.
 *
 * `--dry-run` (a sender's dry run starts it so) changes nothing: the store must exist (exit 4,
 * STORE_NOT_FOUND, before any session, when it does not), no log file is written, no cache drive
 * mounted, a pending commit is not completed, and deltas are refused.
 */
import { statSync } from 'node:fs';
import { readFile, statfs } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { Command } from 'commander';
import { asHavenError, InterruptedError, UsageError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { checkName } from '../../core/names.ts';
import { parseDuration, parseSize } from '../../core/units.ts';
import { targetStaging } from '../../jobs/cache/target.ts';
import {
  ProtocolError,
  type Quota,
  type ReceiverOptions,
  type StoreCapacity,
  StreamReceiver,
} from '../../protocol/index.ts';
import { type AnyStore, openStore } from '../../store/index.ts';
import {
  DEFAULT_CONNECTION_LIMITS,
  listenTls,
  stdioConnection,
  TransportError,
} from '../../transport/index.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';

/**
 * The space of the filesystem an fs store lives on, as a sender is told it (docs/stream-protocol.md
 * §4.1): free is what a non-root writer may still use (f_bavail), as df shows it.
 */
async function fsCapacity(dir: string): Promise<StoreCapacity> {
  const s = await statfs(dir);
  return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
}

interface ReceiveFlags {
  stdio?: boolean;
  listen?: string;
  store: string;
  /** An LVM store's volume groups (docs/store-lvm.md). */
  lvm?: string;
  /** An rbd store's Ceph cluster and pool (docs/store-rbd.md). */
  rbd?: string;
  staging?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tokenFile?: string;
  checkpointEvery: string;
  checkpointInterval: string;
  idleTimeout: string;
  maxConnections: string;
  maxConnectionsPerPeer: string;
  handshakeTimeout: string;
  stopGrace: string;
  /** False with --no-direct-io. */
  directIo: boolean;
  /** False with --no-reflink. */
  reflink: boolean;
  quota?: string;
  serverQuota?: string[];
  dryRun?: boolean;
}

/** `--quota SIZE` and `--server-quota NAME=SIZE` (repeated) as the receiver's quota. */
export function parseQuota(flags: Pick<ReceiveFlags, 'quota' | 'serverQuota'>): Quota | undefined {
  const servers: Record<string, number> = Object.create(null);
  for (const item of flags.serverQuota ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(item);
    if (!m) {
      throw new UsageError(
        `invalid --server-quota ${JSON.stringify(item)}`,
        'Write SERVER=SIZE, e.g. --server-quota web01=100GiB.',
      );
    }
    servers[checkName('server', m[1]!)] = parseSize(m[2]!);
  }
  if (flags.quota === undefined && Object.keys(servers).length === 0) return undefined;
  return { ...(flags.quota === undefined ? {} : { store: parseSize(flags.quota) }), servers };
}

/** "host:port", "[v6]:port" or ":port" (all addresses). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    throw new UsageError(
      `invalid --listen ${JSON.stringify(text)}`,
      'Write ADDRESS:PORT, e.g. 0.0.0.0:7070 or [::]:7070.',
    );
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/**
 * A store path as an operator types it: absolute, or relative starting with ./ or ../, so that a
 * mistyped word does not become a new store in the working directory.
 */
function checkStorePath(path: string): string {
  if (isAbsolute(path) || /^\.\.?\//.test(path)) return path;
  throw new UsageError(
    `--store ${JSON.stringify(path)} is not a path`,
    `Write the store's directory as an absolute path, or as ./${path} for one in the working directory.`,
  );
}

async function readToken(path: string, log: Logger): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new UsageError(
      `cannot read --token-file ${path}: ${(e as Error).message}`,
      'Give a readable file holding the token.',
    );
  }
  const token = text.replace(/\r?\n$/, '');
  if (token.length < 16 || /[\r\n]/.test(token)) {
    throw new UsageError(
      `--token-file ${path} must hold one line of at least 16 characters`,
      'Generate one with: openssl rand -hex 32 > FILE',
    );
  }
  if ((statSync(path).mode & 0o077) !== 0)
    log.warn(`token file ${path} is readable by other users; chmod 600 it`);
  return token;
}

/** A whole-number flag from 1 to `max`. */
function countFlag(name: string, text: string, max: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new UsageError(`${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(text)}`);
  }
  return n;
}

/** What --listen takes beyond the address: its limits, checked before anything starts. */
function listenLimits(f: ReceiveFlags) {
  const total = countFlag('--max-connections', f.maxConnections, 100_000);
  const perPeer = countFlag('--max-connections-per-peer', f.maxConnectionsPerPeer, 100_000);
  return {
    limits: { total, perPeer: Math.min(perPeer, total) },
    handshakeTimeoutMs: parseDuration(f.handshakeTimeout),
    graceMs: parseDuration(f.stopGrace),
  };
}

function checkFlags(f: ReceiveFlags): void {
  if (Boolean(f.stdio) === Boolean(f.listen)) {
    throw new UsageError(
      'give exactly one of --stdio and --listen',
      'Use --stdio under ssh, --listen ADDR:PORT for TLS.',
    );
  }
  if (f.stdio && (f.tlsCert || f.tlsKey || f.tlsCa || f.tokenFile)) {
    throw new UsageError(
      '--tls-* and --token-file apply to --listen only',
      'With --stdio, ssh authenticates the sender.',
    );
  }
  if (f.dryRun && (!f.stdio || f.staging)) {
    throw new UsageError(
      '--dry-run applies to --stdio without --staging',
      'A sender’s dry run starts `haven receive --stdio --dry-run --store PATH`.',
    );
  }
  if (f.listen && (!f.tlsCert || !f.tlsKey)) {
    throw new UsageError(
      '--listen needs --tls-cert and --tls-key',
      'Give the PEM certificate and key of this target.',
    );
  }
  if (f.listen && !f.tlsCa && !f.tokenFile) {
    throw new TransportError('TRANSPORT_NO_AUTH', 'usage', 'a listener must authenticate its senders', {
      hint: 'Give --tls-ca (require client certificates signed by it), --token-file (require a token), or both.',
    });
  }
}

/** The examples at the end of `haven receive --help`. */
function receiveExamples(command: Command): void {
  examples(command, [
    [
      'haven receive --listen 0.0.0.0:8471 --store /srv/haven --tls-cert /etc/haven/dr1.pem --tls-key /etc/haven/dr1.key --tls-ca /etc/haven/ca.pem',
      'accept TLS connections from senders whose certificates the CA signed',
    ],
    [
      'haven receive --stdio --store /srv/haven',
      'what a sender runs on the target through ssh (not for direct use)',
    ],
    [
      'haven receive --listen 0.0.0.0:8471 --store /srv/haven --tls-ca /etc/haven/ca.pem --tls-cert /etc/haven/dr1.pem --tls-key /etc/haven/dr1.key --quota 2TiB --server-quota web01=200GiB',
      'a listener that refuses deltas beyond 2 TiB in all, or 200 GiB for web01',
    ],
  ]);
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('receive')
    .description('receive replication streams into a store (target side)')
    .option('--stdio', 'serve one session on stdin/stdout (run by a sender, locally or through ssh)')
    .option('--listen <addr:port>', 'accept TLS connections on this address')
    .requiredOption('--store <path>', 'store directory (created if missing): absolute, or ./relative')
    .option(
      '--lvm <vgs>',
      'an LVM store: images as LVs in these volume groups (VG[,VG…], VG/POOL for a thin pool), metadata in --store',
    )
    .option('--rbd <location>', 'an rbd store: images in this Ceph pool, metadata in --store')
    .option(
      '--staging <dir>',
      'stage deltas here (a target cache drive) instead of inside the store; auto: the largest cache drive',
    )
    .option('--no-direct-io', 'write images through the page cache instead of O_DIRECT')
    .option(
      '--no-reflink',
      'keep every generation a full separate image: rotate by replaying deltas even where the filesystem can clone',
    )
    .option('--tls-cert <file>', 'PEM certificate of this listener')
    .option('--tls-key <file>', 'PEM private key of this listener')
    .option('--tls-ca <file>', 'require client certificates signed by this CA')
    .option('--token-file <file>', 'require this token in every session')
    .option('--checkpoint-every <size>', 'make staged data durable at least every SIZE', '256MiB')
    .option(
      '--checkpoint-interval <duration>',
      '…or at least this often (default 15s, or $HAVEN_RECEIVE_CHECKPOINT_INTERVAL)',
      process.env.HAVEN_RECEIVE_CHECKPOINT_INTERVAL ?? '15s',
    )
    .option('--idle-timeout <duration>', 'close an open delta whose sender sent nothing for this long', '10m')
    .option(
      '--max-connections <n>',
      'with --listen: connections held at once, all senders together',
      String(DEFAULT_CONNECTION_LIMITS.total),
    )
    .option(
      '--max-connections-per-peer <n>',
      'with --listen: connections held at once from one address',
      String(DEFAULT_CONNECTION_LIMITS.perPeer),
    )
    .option(
      '--handshake-timeout <duration>',
      'with --listen: close a connection whose TLS handshake takes longer',
      '10s',
    )
    .option(
      '--stop-grace <duration>',
      'with --listen: on SIGINT/SIGTERM, let running sessions end for this long before cutting them',
      '10s',
    )
    .option('--quota <size>', 'the most the store may hold, all servers together (e.g. 500GiB)')
    .option(
      '--server-quota <server=size...>',
      'the most one server may take in the store, e.g. web01=100GiB (repeatable)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--dry-run', '(a sender’s dry run) answer questions only: create, record and change nothing');
  receiveExamples(command);
  command.action((flags: ReceiveFlags) => runReceive(flags, context()));
}

async function runReceive(flags: ReceiveFlags, ctx: CliContext): Promise<void> {
  checkFlags(flags);
  checkStorePath(flags.store);
  const listen = flags.listen ? { ...parseListen(flags.listen), ...listenLimits(flags) } : undefined;
  const checkpointEveryBytes = parseSize(flags.checkpointEvery);
  const checkpointEveryMs = parseDuration(flags.checkpointInterval);
  const idleTimeoutMs = parseDuration(flags.idleTimeout);
  const quota = parseQuota(flags);
  const log = flags.dryRun ? ctx.log : ctx.openRunLog('receive');
  const token = flags.tokenFile ? await readToken(flags.tokenFile, log) : undefined;
  const receiverOptions: ReceiverOptions = {
    log,
    checkpointEveryBytes,
    checkpointEveryMs,
    idleTimeoutMs,
    ...(quota ? { quota } : {}),
    ...(flags.dryRun ? { readOnly: true } : {}),
    // Crash tests only: die between committing a generation and saying so (the window where
    // a sender must find out from the store itself that its copy is done).
    ...(process.env.HAVEN_TEST_FAULT === 'receiver-after-commit'
      ? { afterCommit: () => process.kill(process.pid, 'SIGKILL') }
      : {}),
  };
  const config = await ctx.config();
  // --staging auto: the largest cache drive of this host (docs/design.md §4.6), mounted if need be.
  const cache =
    flags.staging === 'auto'
      ? await targetStaging({
          signature: config.cache.signature,
          runDir: ctx.paths.runDir,
          log,
        })
      : undefined;
  const stagingDir = flags.staging === 'auto' ? cache?.path : flags.staging;
  try {
    const store = await openStore(flags.store, {
      create: !flags.dryRun,
      ...(flags.lvm !== undefined ? { volumeGroups: flags.lvm } : {}),
      ...(flags.rbd !== undefined ? { rbd: flags.rbd } : {}),
      log,
      directIo: flags.directIo,
      reflinks: flags.reflink,
      ...(stagingDir ? { stagingDir } : {}),
      // This DR host's own settings.
      definitionRules: async () => config.definitions,
      recheckAfterMs: config.integrity.recheckMs,
    });
    const capacity = () => (store.kind === 'fs' ? fsCapacity(store.location) : store.capacity());
    const withCapacity = { ...receiverOptions, capacity };
    try {
      if (listen) await serveListener(flags, listen, token, store, withCapacity, log);
      else await serveStdio(store, withCapacity, log);
    } finally {
      await store.close();
    }
  } finally {
    await cache?.release();
  }
}

async function serveStdio(store: AnyStore, o: ReceiverOptions, log: Logger): Promise<void> {
  const { stream, input } = stdioConnection((e) => asHavenError(e));
  // Stopped (or the terminal went away): end like a lost connection, so what was marked is
  // checkpointed before the process exits. Answers to requests read after the signal never
  // leave (stdio.ts holds each answer past the next poll of the event loop), and the stop is
  // what the process reports (exit 130) whether the session was idle, mid-request or ending.
  let stopped: InterruptedError | null = null;
  const stop = (signal: NodeJS.Signals) => {
    stopped ??= new InterruptedError(`receiver stopped by ${signal}`);
    stream.destroy(stopped);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.once(s, stop);
  try {
    const failure = await new StreamReceiver(stream, store, { ...o, ...(input ? { input } : {}) }).run().then(
      () => null,
      (e: unknown) => e,
    );
    if (stopped) throw stopped;
    if (failure) throw failure;
  } finally {
    for (const s of signals) process.off(s, stop);
    await new Promise<void>((resolve) => {
      if (stream.writableFinished || stream.destroyed) return resolve();
      stream.end(() => resolve());
      setTimeout(resolve, 5000).unref();
    });
    stream.destroy();
    log.debug('stdio session over');
  }
}

async function serveListener(
  flags: ReceiveFlags,
  {
    host,
    port,
    limits,
    handshakeTimeoutMs,
    graceMs,
  }: { host: string; port: number } & ReturnType<typeof listenLimits>,
  token: string | undefined,
  store: AnyStore,
  o: ReceiverOptions,
  log: Logger,
): Promise<void> {
  for (const m of await store.recover()) log.verbose(`recover: ${m}`);
  const listener = await listenTls({
    host,
    port,
    cert: flags.tlsCert!,
    key: flags.tlsKey!,
    ...(flags.tlsCa ? { ca: flags.tlsCa } : {}),
    tokenRequired: token !== undefined,
    limits,
    handshakeTimeoutMs,
    log,
    onConnection: (socket, peer) =>
      new StreamReceiver(socket, store, {
        ...o,
        log: log.child({ peer: peer.description }),
        ...(token ? { token } : {}),
        ...(peer.verified
          ? {}
          : {
              refuse: new ProtocolError(
                'PROTO_AUTH_FAILED',
                `client certificate not accepted: ${peer.error}`,
              ),
            }),
      }).run(),
  });
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  log.info(`${signal}: stopping`, { sessions: listener.active, connections: listener.connections });
  // Bounded whatever the senders do: a second signal is not needed (and, handlers gone, kills).
  const { cut } = await listener.close({ graceMs });
  if (cut > 0)
    log.warn(`${cut} session(s) were cut; what they marked stays staged and resumes on the next run`);
}
