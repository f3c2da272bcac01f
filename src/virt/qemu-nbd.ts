/**
 * Offline images: a shut-off server's disk served by `qemu-nbd` on a unix socket, so the engine
 * reads it through the same NBD path as a live backup (docs/design.md §3, §6). With `bitmap`, the export
 * also offers the `qemu:dirty-bitmap:<name>` meta context (qemu-nbd -B).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { basename, join } from 'node:path';
import { HavenError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { ensureRunDir, havenPaths } from '../core/paths.ts';
import { qemuToolError, VirtError } from './errors.ts';

export interface ExportImageOptions {
  path: string;
  /** Image format (qcow2, raw). Always given: probing a raw image is unsafe. */
  format: string;
  /** Where to listen; default a fresh name in the run directory. */
  socketPath?: string;
  /** NBD export name (default: the image's base name). */
  exportName?: string;
  /** A persistent bitmap of the image to offer as qemu:dirty-bitmap:<bitmap>. */
  bitmap?: string;
  /** Export read-only (default true). */
  readOnly?: boolean;
  /** qemu-nbd --cache (default 'none': reads do not fill the host page cache). */
  cache?: 'none' | 'writeback' | 'writethrough' | 'directsync' | 'unsafe';
  /** How many clients may connect at once (default 8). */
  shared?: number;
  /** How long to wait for the socket to accept (default 15 s). */
  startTimeoutMs?: number;
  log?: Logger;
}

export interface ImageExport {
  socketPath: string;
  exportName: string;
  /** The meta context carrying the bitmap, when one was asked for. */
  bitmapContext: string | undefined;
  pid: number;
  /** Stops qemu-nbd and removes the socket. Safe to call more than once. */
  stop(): Promise<void>;
}

/** Longest path a unix socket address holds (sun_path is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;

export function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new VirtError('VIRT_BAD_ARGUMENT', `socket path is longer than ${MAX_SOCKET_PATH} bytes: ${path}`, {
      hint: 'Use a shorter run directory (HAVEN_RUN_DIR).',
      details: { path },
    });
  }
}

/** True when something accepts connections on the unix socket. */
export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * True once a server on `path` sends the newstyle greeting ("NBDMAGIC", NBD proto.md
 * "Newstyle negotiation"). qemu-nbd binds its socket before it opens the image, so a connection
 * that is accepted proves nothing: an image it cannot open (locked by a running guest) makes it
 * exit without ever greeting.
 */
function serverGreets(path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    let got = Buffer.alloc(0);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on('data', (b: Buffer) => {
      got = Buffer.concat([got, b]);
      if (got.length >= 8) done(got.subarray(0, 8).toString('latin1') === 'NBDMAGIC');
    });
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Starts qemu-nbd and resolves once it greets on its socket (it has opened the image). */
export async function exportImage(options: ExportImageOptions): Promise<ImageExport> {
  const log = options.log ?? silentLogger;
  const exportName = options.exportName ?? basename(options.path).replace(/\.[^.]*$/, '');
  const socketPath =
    options.socketPath ??
    join(ensureRunDir(havenPaths().runDir), `nbd-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
  checkSocketPath(socketPath);
  if (!existsSync(options.path)) {
    throw new VirtError('VIRT_IMAGE_NOT_FOUND', `image not found: ${options.path}`, {
      details: { path: options.path },
    });
  }
  // A socket left by a crashed export: qemu-nbd cannot bind over it.
  if (existsSync(socketPath)) {
    if (await socketAccepts(socketPath)) {
      throw new VirtError('VIRT_BAD_ARGUMENT', `socket ${socketPath} is in use by another server`, {
        details: { socketPath },
      });
    }
    unlinkSync(socketPath);
  }
  const args = [
    '--persistent',
    `--shared=${options.shared ?? 8}`,
    `--cache=${options.cache ?? 'none'}`,
    `--format=${options.format}`,
    `--socket=${socketPath}`,
    `--export-name=${exportName}`,
    ...(options.bitmap ? [`--bitmap=${options.bitmap}`] : []),
    ...(options.readOnly === false ? [] : ['--read-only']),
    options.path,
  ];
  log.debug('qemu-nbd', { args });
  const child = spawn('qemu-nbd', args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    if (stderr.length < 16_384) stderr += b.toString('utf8');
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  // 'close' comes after stderr is drained, so an early failure is reported with its message.
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));

  const removeSocket = () => {
    try {
      unlinkSync(socketPath);
    } catch {
      // already gone
    }
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    child.kill('SIGTERM');
    if (!(await waitExit(child, 5000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5000);
    }
    removeSocket();
    log.debug('qemu-nbd stopped', { socketPath });
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  for (;;) {
    const early = await Promise.race([
      spawnError,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 25)),
    ]);
    if (early) {
      const e = early as NodeJS.ErrnoException;
      throw e.code === 'ENOENT'
        ? new HavenError('TOOL_MISSING', 'qemu-nbd is not installed', {
            kind: 'unavailable',
            hint: 'Install qemu-utils (see `haven doctor`).',
            details: { command: 'qemu-nbd' },
          })
        : new VirtError('VIRT_QEMU_NBD_FAILED', `qemu-nbd: ${e.message}`, { cause: e });
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
      // qemu-nbd may have bound the socket before it found the problem.
      removeSocket();
      throw qemuToolError('qemu-nbd', args, stderr, child.exitCode ?? 1);
    }
    if (existsSync(socketPath) && (await serverGreets(socketPath, 500))) break;
    if (Date.now() > deadline) {
      await stop();
      throw new VirtError(
        'VIRT_QEMU_NBD_FAILED',
        `qemu-nbd did not accept connections on ${socketPath} in time`,
        {
          details: { args, stderr },
        },
      );
    }
  }
  log.verbose('image exported', { path: options.path, socketPath, exportName, bitmap: options.bitmap });
  return {
    socketPath,
    exportName,
    bitmapContext: options.bitmap ? `qemu:dirty-bitmap:${options.bitmap}` : undefined,
    pid: child.pid ?? 0,
    stop,
  };
}
