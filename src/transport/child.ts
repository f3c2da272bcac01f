/**
 * Child-process transports: `haven <command>` run locally (node + bin/haven.mjs) or on another
 * host through the system ssh client, so the operator's ~/.ssh/config, keys and known_hosts
 * apply. Replication runs `haven receive --stdio` on its target this way, failback
 * `haven failback-receive` on the primary (recovery/failback/link.ts): one spawn, one exit
 * classification, one way to stop a child that does not end. The child's stdout/stdin carry the
 * stream; its stderr is logged line by line and its last lines explain a failure. A child that
 * dies, an ssh that cannot log in, or a host without `haven` become typed 'unavailable' errors.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { asHavenError, type HavenError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { installPath } from '../core/package-root.ts';
import { type Connection, JoinedStream } from './connection.ts';
import { TransportError } from './errors.ts';
import { formatTarget, type StoreQuery, type Target } from './url.ts';

/** bin/haven.mjs of this installation. */
export const HAVEN_BIN = installPath('bin', 'haven.mjs');

/** Where a peer runs: on this host, or on one reached through ssh. */
export type PeerHost = { kind: 'local' } | { kind: 'ssh'; host: string; user?: string; port?: number };

export interface PeerOptions {
  log?: Logger;
  /** How to run haven locally; default [node, bin/haven.mjs]. */
  localCommand?: string[];
  /** The ssh program. Default "ssh". */
  sshCommand?: string;
  /** Extra ssh arguments, placed before the host (e.g. ['-i', key, '-o', 'Compression=no']). */
  sshOptions?: string[];
  /** The command that runs haven on the other host, as its shell reads it. Default "haven". */
  remoteCommand?: string;
  /** How long close() waits for the child before signalling it. Default 30 s. */
  exitTimeoutMs?: number;
}

export interface ChildOptions extends PeerOptions {
  /** Extra arguments for `haven receive` (e.g. ['--staging', '/mnt/cache']). */
  receiveArgs?: string[];
}

/** What the peer is, for its messages, hints and log lines. */
export interface PeerRole {
  /** "receiver", "failback receiver". */
  noun: string;
  /** The machine it serves: "target", "primary" (also the log field naming it). */
  side: 'target' | 'primary';
  /** The peer in messages: "the receiver at ssh://dr1/srv/haven". */
  name: string;
  /** Where it is, for logs and errors: a target URL, ssh://host. */
  description: string;
}

/** Quotes one word for a POSIX shell (ssh hands the remote command to the login shell). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The ssh argument vector that runs `haven <havenArgs>` on `host`. */
export function sshPeerArgs(
  host: Extract<PeerHost, { kind: 'ssh' }>,
  havenArgs: readonly string[],
  o: PeerOptions = {},
): string[] {
  return [
    '-T', // no terminal: a pty would mangle the binary stream
    '-e',
    'none',
    '-o',
    'BatchMode=yes', // never prompt: a job runs unattended
    '-o',
    'ServerAliveInterval=15',
    '-o',
    'ServerAliveCountMax=4',
    ...(host.port ? ['-p', String(host.port)] : []),
    ...(host.user ? ['-l', host.user] : []),
    ...(o.sshOptions ?? []),
    host.host,
    [o.remoteCommand ?? 'haven', ...havenArgs.map(shellQuote)].join(' '),
  ];
}

/** The program and arguments that run `haven <havenArgs>` on this host. */
export function localPeerArgs(havenArgs: readonly string[], o: PeerOptions = {}): [string, string[]] {
  const [cmd, ...pre] = o.localCommand ?? [process.execPath, HAVEN_BIN];
  return [cmd!, [...pre, ...havenArgs]];
}

function receiveArgs(path: string, o: ChildOptions, q: StoreQuery = {}): string[] {
  return [
    'receive',
    '--stdio',
    '--store',
    path,
    ...(q.lvm ? ['--lvm', q.lvm] : []),
    ...(q.rbd ? ['--rbd', q.rbd] : []),
    ...(o.receiveArgs ?? []),
  ];
}

/** The ssh argument vector for a target. */
export function sshArgs(t: Extract<Target, { kind: 'ssh' }>, o: ChildOptions = {}): string[] {
  return sshPeerArgs(t, receiveArgs(t.path, o, t), o);
}

export function localArgs(path: string, o: ChildOptions = {}): [string, string[]] {
  return localPeerArgs(receiveArgs(path, o), o);
}

export function openChildTarget(
  target: Extract<Target, { kind: 'local' | 'ssh' }>,
  o: ChildOptions = {},
): Connection {
  const description = formatTarget(target);
  const host: PeerHost = target.kind === 'ssh' ? target : { kind: 'local' };
  return spawnPeer(
    host,
    receiveArgs(target.path, o, target),
    { noun: 'receiver', side: 'target', name: `the receiver at ${description}`, description },
    o,
  );
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: NodeJS.ErrnoException;
}

/** The last lines of a child's stderr, each also logged. */
function stderrTail(child: ChildProcessWithoutNullStreams, log: Logger, prefix: string) {
  const lines: string[] = [];
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    const parts = (partial + s).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      if (!line.trim()) continue;
      log.verbose(`${prefix}: ${line}`);
      lines.push(line);
      if (lines.length > 20) lines.shift();
    }
  });
  return {
    lines,
    /** At exit: the unterminated last line counts too. */
    flush() {
      if (partial.trim()) lines.push(partial);
      partial = '';
    },
  };
}

/** Why a child ended, as the error its stream fails with (null: a clean exit). */
function classifyExit(
  x: Exit,
  command: string,
  viaSsh: boolean,
  role: PeerRole,
  tail: string[],
): HavenError | null {
  const stderr = tail.slice(-5).join('\n');
  const details = { command, exitCode: x.code, signal: x.signal, stderr: tail.join('\n').slice(-4000) };
  if (x.spawnError) {
    return new TransportError(
      'TRANSPORT_CHILD_FAILED',
      'unavailable',
      `cannot run ${command}: ${x.spawnError.message}`,
      {
        hint: viaSsh
          ? 'Install the OpenSSH client (ssh), or set the ssh command.'
          : 'Check the Haven installation.',
        details,
        cause: x.spawnError,
      },
    );
  }
  if (x.code === 0) return null;
  if (viaSsh && x.code === 255) {
    return new TransportError(
      'TRANSPORT_SSH_FAILED',
      'unavailable',
      `ssh to ${role.description} failed: ${stderr || 'exit 255'}`,
      {
        hint: `Check that the ${role.side} is reachable and accepts this host’s key (ssh -o BatchMode=yes as the Haven user).`,
        details,
      },
    );
  }
  // 127: the shell found no such command (haven missing on the other host, or node here).
  if (x.code === 127) {
    return new TransportError(
      'TRANSPORT_REMOTE_COMMAND_MISSING',
      'unavailable',
      `${viaSsh ? `the ${role.side}` : 'this host'} cannot run haven: ${stderr || 'command not found'}`,
      { hint: `Install Haven on the ${role.side}, or set the remote command to its full path.`, details },
    );
  }
  const what = x.signal ? `was killed by ${x.signal}` : `exited with code ${x.code}`;
  return new TransportError(
    'TRANSPORT_CHILD_FAILED',
    'unavailable',
    `${role.name} ${what}${stderr ? `: ${stderr}` : ''}`,
    {
      hint: `See the ${role.noun}’s log on the ${role.side} (its last lines are in this error’s details).`,
      details,
    },
  );
}

/**
 * Runs `haven <havenArgs>` on `host` and returns the stream to it. The stream fails with the
 * child's exit classified (classifyExit) rather than a bare EPIPE; close() ends the stream, waits
 * `exitTimeoutMs` for the child, then sends SIGTERM and, 5 s later, SIGKILL.
 */
export function spawnPeer(
  host: PeerHost,
  havenArgs: readonly string[],
  role: PeerRole,
  o: PeerOptions = {},
): Connection {
  const viaSsh = host.kind === 'ssh';
  const [command, args] = viaSsh
    ? [o.sshCommand ?? 'ssh', sshPeerArgs(host, havenArgs, o)]
    : localPeerArgs(havenArgs, o);
  const log = (o.log ?? silentLogger).child({ [role.side]: role.description });
  log.debug(`starting the ${role.noun}`, { command, args });
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
  const tail = stderrTail(child, log, role.side);
  let spawnError: NodeJS.ErrnoException | undefined;
  const exited = new Promise<Exit>((resolve) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e;
      // 'close' may not follow a failed spawn.
      if (child.pid === undefined) resolve({ code: null, signal: null, spawnError: e });
    });
    child.on('close', (code, signal) => {
      tail.flush();
      resolve({ code, signal, ...(spawnError ? { spawnError } : {}) });
    });
  });
  const classify = (x: Exit) => classifyExit(x, command, viaSsh, role, tail.lines);

  const stream = new JoinedStream(child.stdout, child.stdin, {
    mapError: (e) => asHavenError(e),
    settleEnd: async () => classify(await exited),
  });
  // Writes to a child that is gone fail with EPIPE; the exit status reports why.
  child.stdin.on('error', () => {});

  return {
    stream,
    description: role.description,
    ...(child.pid !== undefined ? { pid: child.pid } : {}),
    async close() {
      if (!stream.destroyed && !stream.writableEnded) stream.end();
      const timeout = o.exitTimeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        exited,
        new Promise<null>((r) => {
          timer = setTimeout(() => r(null), timeout);
        }),
      ]);
      clearTimeout(timer);
      if (result === null) {
        log.warn(`the ${role.noun} did not exit within ${timeout} ms; stopping it`);
        child.kill('SIGTERM');
        const killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killTimer);
      }
      const x = await exited;
      const err = classify(x);
      if (err) log.debug(`the ${role.noun} ended`, { code: err.code, exitCode: x.code, signal: x.signal });
    },
  };
}
