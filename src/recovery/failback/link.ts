/**
 * The byte stream from the DR site to the primary's failback receiver (`haven failback-receive`,
 * see receiver.ts): a local child process (both sites on one host), or that command run on the
 * primary through the system ssh client, as replication reaches its targets (transport/child.ts).
 * The child's stdin/stdout carry the stream; its stderr goes to the log, and its last lines
 * explain a failure.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { asHavenError, type HavenError, UsageError } from '../../core/errors.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { StreamSender } from '../../protocol/index.ts';
import {
  type Connection,
  HAVEN_BIN,
  JoinedStream,
  shellQuote,
  TransportError,
} from '../../transport/index.ts';

export type PrimaryEndpoint = { kind: 'local' } | { kind: 'ssh'; host: string; user?: string; port?: number };

const HOST = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$|^\[[0-9A-Fa-f:.]+\]$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** `local`, or the primary's ssh address: `ssh://[user@]host[:port]` or `[user@]host`. */
export function parsePrimaryEndpoint(spec: string): PrimaryEndpoint {
  const s = spec.trim();
  if (s === 'local') return { kind: 'local' };
  const m = /^(?:ssh:\/\/)?(?:([^@/]+)@)?([^:/@]+|\[[^\]]+\])(?::(\d{1,5}))?\/?$/.exec(s);
  const user = m?.[1];
  const host = m?.[2];
  const port = m?.[3] === undefined ? undefined : Number(m[3]);
  if (
    !m ||
    !host ||
    !HOST.test(host) ||
    (user !== undefined && !USER.test(user)) ||
    (port !== undefined && (port < 1 || port > 65535))
  ) {
    throw new UsageError(
      `--to ${JSON.stringify(spec)} names no primary`,
      'Write `local` (both sites on this host) or the primary’s ssh address: ssh://[user@]host[:port] or [user@]host.',
    );
  }
  return {
    kind: 'ssh',
    host: host.replace(/^\[|\]$/g, ''),
    ...(user !== undefined ? { user } : {}),
    ...(port !== undefined ? { port } : {}),
  };
}

export function describeEndpoint(e: PrimaryEndpoint): string {
  return e.kind === 'local'
    ? 'local'
    : `ssh://${e.user ? `${e.user}@` : ''}${e.host}${e.port ? `:${e.port}` : ''}`;
}

export interface LinkOptions {
  log?: Logger;
  /** Extra ssh arguments (before the host). */
  sshOptions?: string[];
  /** How haven is run on the primary (default "haven"). */
  remoteCommand?: string;
  /** How haven is run locally (default node + bin/haven.mjs of this installation). */
  localCommand?: string[];
}

/** Starts the receiver with `args` (the words after `haven`) and returns the stream to it. */
export function openPrimaryLink(endpoint: PrimaryEndpoint, args: string[], o: LinkOptions = {}): Connection {
  const log = (o.log ?? silentLogger).child({ primary: describeEndpoint(endpoint) });
  let command: string;
  let argv: string[];
  if (endpoint.kind === 'local') {
    const [cmd, ...pre] = o.localCommand ?? [process.execPath, HAVEN_BIN];
    command = cmd!;
    argv = [...pre, ...args];
  } else {
    command = 'ssh';
    argv = [
      '-T',
      '-e',
      'none',
      '-o',
      'BatchMode=yes',
      '-o',
      'ServerAliveInterval=15',
      '-o',
      'ServerAliveCountMax=4',
      ...(endpoint.port ? ['-p', String(endpoint.port)] : []),
      ...(endpoint.user ? ['-l', endpoint.user] : []),
      ...(o.sshOptions ?? []),
      endpoint.host,
      [o.remoteCommand ?? 'haven', ...args.map(shellQuote)].join(' '),
    ];
  }
  log.debug('starting the failback receiver', { command, args: argv });
  const child = spawn(command, argv, { stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
  const tail: string[] = [];
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    const lines = (partial + s).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      log.verbose(`primary: ${line}`);
      tail.push(line);
      if (tail.length > 20) tail.shift();
    }
  });
  let spawnError: NodeJS.ErrnoException | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e;
      if (child.pid === undefined) resolve({ code: null, signal: null });
    });
    child.on('close', (code, signal) => {
      if (partial.trim()) tail.push(partial);
      resolve({ code, signal });
    });
  });
  const classify = (x: { code: number | null; signal: NodeJS.Signals | null }): HavenError | null => {
    const details = { command, exitCode: x.code, signal: x.signal, stderr: tail.join('\n').slice(-4000) };
    const last = tail.slice(-3).join('; ');
    if (spawnError) {
      return new TransportError(
        'TRANSPORT_CHILD_FAILED',
        'unavailable',
        `cannot run ${command}: ${spawnError.message}`,
        {
          details,
          cause: spawnError,
        },
      );
    }
    if (x.code === 0) return null;
    if (endpoint.kind === 'ssh' && x.code === 255) {
      return new TransportError(
        'TRANSPORT_SSH_FAILED',
        'unavailable',
        `ssh to the primary failed: ${last || 'exit 255'}`,
        {
          hint: 'Check that the primary is reachable and accepts this host’s key (ssh -o BatchMode=yes).',
          details,
        },
      );
    }
    return new TransportError(
      'TRANSPORT_CHILD_FAILED',
      'unavailable',
      `the failback receiver ${x.signal ? `was killed by ${x.signal}` : `exited with code ${x.code}`}${last ? `: ${last}` : ''}`,
      {
        hint: 'See the receiver’s log on the primary (its last lines are in this error’s details).',
        details,
      },
    );
  };
  const stream = new JoinedStream(child.stdout, child.stdin, {
    mapError: (e) => asHavenError(e),
    settleEnd: async () => classify(await exited),
  });
  child.stdin.on('error', () => {});
  return {
    stream,
    description: describeEndpoint(endpoint),
    ...(child.pid !== undefined ? { pid: child.pid } : {}),
    async close() {
      if (!stream.destroyed && !stream.writableEnded) stream.end();
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        exited,
        new Promise<null>((r) => {
          timer = setTimeout(() => r(null), 60_000);
        }),
      ]);
      clearTimeout(timer);
      if (done === null) {
        log.warn('the failback receiver did not exit; stopping it');
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** A session factory for the engine: each call starts a receiver and does the handshake. */
export function primarySessions(
  endpoint: PrimaryEndpoint,
  args: string[],
  o: LinkOptions & { compress: number },
  opened: StreamSender[],
): () => Promise<StreamSender> {
  return async () => {
    const conn = openPrimaryLink(endpoint, args, o);
    const sender = await StreamSender.over(conn, {
      compression:
        o.compress > 0 ? { algorithm: 'zstd', level: o.compress } : { algorithm: 'none', level: 0 },
      ...(o.log ? { log: o.log } : {}),
    });
    opened.push(sender);
    return sender;
  };
}
