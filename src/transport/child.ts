/**
 * Child-process transports: `haven receive --stdio` run locally (node + bin/haven.mjs) or on a
 * target through the system ssh client, so the operator's ~/.ssh/config, keys and known_hosts
 * apply. The child's stdout/stdin carry the stream; its stderr is logged line by line and its last
 * lines explain a failure. A child that dies, an ssh that cannot log in, or a target without
 * `haven` become typed 'unavailable' errors.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { asHavenError, type HavenError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { installPath } from '../core/package-root.ts';
import { type Connection, JoinedStream } from './connection.ts';
import { TransportError } from './errors.ts';
import { formatTarget, type Target } from './url.ts';

/** bin/haven.mjs of this installation. */
export const HAVEN_BIN = installPath('bin', 'haven.mjs');

export interface ChildOptions {
  log?: Logger;
  /** Extra arguments for `haven receive` (e.g. ['--staging', '/mnt/cache']). */
  receiveArgs?: string[];
  /** How to run haven locally; default [node, bin/haven.mjs]. */
  localCommand?: string[];
  /** The ssh program. Default "ssh". */
  sshCommand?: string;
  /** Extra ssh arguments, placed before the host (e.g. ['-i', key, '-o', 'Compression=no']). */
  sshOptions?: string[];
  /** The command that runs haven on the target, as the remote shell reads it. Default "haven". */
  remoteCommand?: string;
  /** How long close() waits for the child before signalling it. Default 30 s. */
  exitTimeoutMs?: number;
}

/** Quotes one word for a POSIX shell (ssh hands the remote command to the login shell). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The ssh argument vector for a target. */
export function sshArgs(t: Extract<Target, { kind: 'ssh' }>, o: ChildOptions = {}): string[] {
  const remote = [
    o.remoteCommand ?? 'haven',
    ...['receive', '--stdio', '--store', t.path, ...(o.receiveArgs ?? [])].map(shellQuote),
  ].join(' ');
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
    ...(t.port ? ['-p', String(t.port)] : []),
    ...(t.user ? ['-l', t.user] : []),
    ...(o.sshOptions ?? []),
    t.host,
    remote,
  ];
}

export function localArgs(path: string, o: ChildOptions = {}): [string, string[]] {
  const [cmd, ...pre] = o.localCommand ?? [process.execPath, HAVEN_BIN];
  return [cmd!, [...pre, 'receive', '--stdio', '--store', path, ...(o.receiveArgs ?? [])]];
}

export function openChildTarget(
  target: Extract<Target, { kind: 'local' | 'ssh' }>,
  o: ChildOptions = {},
): Connection {
  const [command, args] =
    target.kind === 'ssh' ? [o.sshCommand ?? 'ssh', sshArgs(target, o)] : localArgs(target.path, o);
  return spawnConnection(command, args, formatTarget(target), target.kind === 'ssh', o);
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: NodeJS.ErrnoException;
}

function spawnConnection(
  command: string,
  args: string[],
  description: string,
  viaSsh: boolean,
  o: ChildOptions,
): Connection {
  const log = (o.log ?? silentLogger).child({ target: description });
  log.debug('starting receiver', { command, args });
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
  const tail: string[] = [];
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    const lines = (partial + s).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      log.verbose(`target: ${line}`);
      tail.push(line);
      if (tail.length > 20) tail.shift();
    }
  });
  let spawnError: NodeJS.ErrnoException | undefined;
  const exited = new Promise<Exit>((resolve) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e;
      // 'close' may not follow a failed spawn.
      if (child.pid === undefined) resolve({ code: null, signal: null, spawnError: e });
    });
    child.on('close', (code, signal) => {
      if (partial.trim()) tail.push(partial);
      resolve({ code, signal, ...(spawnError ? { spawnError } : {}) });
    });
  });

  const classify = (x: Exit): HavenError | null => {
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
        `ssh to ${description} failed: ${stderr || 'exit 255'}`,
        {
          hint: 'Check that the target is reachable and accepts this host’s key (ssh -o BatchMode=yes as the Haven user).',
          details,
        },
      );
    }
    if (x.code === 127) {
      return new TransportError(
        'TRANSPORT_REMOTE_COMMAND_MISSING',
        'unavailable',
        `${viaSsh ? 'the target' : 'this host'} cannot run haven: ${stderr || 'command not found'}`,
        { hint: 'Install Haven on the target, or set the remote command to its full path.', details },
      );
    }
    const what = x.signal ? `was killed by ${x.signal}` : `exited with code ${x.code}`;
    return new TransportError(
      'TRANSPORT_CHILD_FAILED',
      'unavailable',
      `the receiver at ${description} ${what}${stderr ? `: ${stderr}` : ''}`,
      {
        hint: 'See the receiver’s log on the target (its last lines are in this error’s details).',
        details,
      },
    );
  };

  const stream = new JoinedStream(child.stdout, child.stdin, {
    mapError: (e) => asHavenError(e),
    settleEnd: async () => classify(await exited),
  });
  // Writes to a child that is gone fail with EPIPE; the exit status reports why.
  child.stdin.on('error', () => {});

  return {
    stream,
    description,
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
        log.warn(`receiver did not exit within ${timeout} ms; stopping it`);
        child.kill('SIGTERM');
        const killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killTimer);
      }
      const x = await exited;
      const err = classify(x);
      if (err) log.debug('receiver ended', { code: err.code, exitCode: x.code, signal: x.signal });
    },
  };
}
