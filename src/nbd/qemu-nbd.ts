/**
 * Starting and stopping a qemu-nbd export: how Haven reads an offline server's image (docs/design.md §6),
 * and how tests and benchmarks get a real NBD server.
 *
 * qemu-nbd runs as our child process (so it is reaped, and stop() signals only it). Readiness
 * needs no polling of the socket: qemu-nbd writes its --pid-file only after the socket listens
 * (a documented property of the option), so the export is ready when that file appears.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { silentLogger } from '../core/log.ts';

export interface QemuNbdOptions {
  image: string;
  /** Image format, e.g. 'raw' or 'qcow2' (always given: qemu-nbd must not guess). */
  format: string;
  /** Listen on this unix socket... */
  socketPath?: string;
  /** ...or on TCP (bind address defaults to 127.0.0.1). */
  port?: number;
  bind?: string;
  /** Where qemu-nbd writes its process id. */
  pidFile: string;
  exportName?: string;
  description?: string;
  readOnly?: boolean;
  /** Persistent dirty bitmaps to expose as qemu:dirty-bitmap:<name>. */
  bitmaps?: string[];
  /** Clients allowed at once (qemu-nbd --shared; default 1). */
  shared?: number;
  /** Keep serving after the last client leaves (default true). */
  persistent?: boolean;
  cache?: 'none' | 'writeback' | 'writethrough' | 'directsync' | 'unsafe';
  aio?: 'threads' | 'native' | 'io_uring';
  discard?: 'ignore' | 'unmap';
  detectZeroes?: 'off' | 'on' | 'unmap';
  log?: Logger;
}

export interface QemuNbdServer {
  readonly pid: number;
  readonly socketPath: string | undefined;
  readonly port: number | undefined;
  readonly host: string | undefined;
  readonly exportName: string;
  /** Stops the server (SIGTERM, then SIGKILL if it lingers) and removes its socket and pid file. */
  stop(): Promise<void>;
}

export function qemuNbdArgs(o: QemuNbdOptions): string[] {
  const args = [`--pid-file=${o.pidFile}`, '-f', o.format];
  if (o.socketPath) args.push('-k', o.socketPath);
  else args.push('-p', String(o.port ?? 10809), '-b', o.bind ?? '127.0.0.1');
  if (o.exportName !== undefined) args.push('-x', o.exportName);
  if (o.description) args.push('-D', o.description);
  if (o.readOnly) args.push('-r');
  for (const b of o.bitmaps ?? []) args.push('-B', b);
  if (o.shared !== undefined) args.push(`--shared=${o.shared}`);
  if (o.persistent ?? true) args.push('-t');
  if (o.cache) args.push(`--cache=${o.cache}`);
  if (o.aio) args.push(`--aio=${o.aio}`);
  if (o.discard) args.push(`--discard=${o.discard}`);
  if (o.detectZeroes) args.push(`--detect-zeroes=${o.detectZeroes}`);
  args.push(o.image);
  return args;
}

function startFailed(o: QemuNbdOptions, args: string[], why: string, cause?: unknown): HavenError {
  return new HavenError('NBD_SERVER_START_FAILED', `qemu-nbd could not export ${o.image}: ${why}`, {
    kind: 'unavailable',
    cause,
    hint: 'Check the image path and format, that no other process holds its lock, and that every bitmap named with -B exists.',
    details: { image: o.image, args },
  });
}

export function startQemuNbd(o: QemuNbdOptions): Promise<QemuNbdServer> {
  const log = o.log ?? silentLogger;
  const args = qemuNbdArgs(o);
  rmSync(o.pidFile, { force: true });
  const child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < 4000) stderr += b.toString('utf8');
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stopping: Promise<void> | undefined;
  const server: QemuNbdServer = {
    pid: child.pid ?? -1,
    socketPath: o.socketPath,
    port: o.socketPath ? undefined : (o.port ?? 10809),
    host: o.socketPath ? undefined : (o.bind ?? '127.0.0.1'),
    exportName: o.exportName ?? '',
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(o.pidFile, { force: true });
        if (o.socketPath) rmSync(o.socketPath, { force: true });
        log.debug('qemu-nbd stopped', { pid: child.pid });
      })();
      return stopping;
    },
  };
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: HavenError) => {
      if (done) return;
      done = true;
      clearInterval(poll);
      if (err) {
        child.kill('SIGKILL');
        reject(err);
      } else {
        log.debug('qemu-nbd started', { pid: child.pid, image: o.image, socket: o.socketPath, port: o.port });
        resolve(server);
      }
    };
    child.once('error', (e: NodeJS.ErrnoException) =>
      finish(
        e.code === 'ENOENT'
          ? new HavenError('TOOL_MISSING', 'qemu-nbd is not installed', {
              kind: 'unavailable',
              hint: 'Install qemu-utils.',
              details: { command: 'qemu-nbd' },
            })
          : startFailed(o, args, e.message, e),
      ),
    );
    void exited.then(() =>
      finish(startFailed(o, args, stderr.trim() || `exited with code ${child.exitCode}`)),
    );
    const deadline = Date.now() + 60_000;
    const poll = setInterval(() => {
      if (existsSync(o.pidFile)) finish();
      else if (Date.now() > deadline) finish(startFailed(o, args, 'not ready after 60 s'));
    }, 10);
  });
}
