/**
 * Shared setup for the NBD integration tests: scratch directories, test images with data, holes
 * and zero ranges made by qemu-img/qemu-io, real servers (qemu-nbd, nbdkit) stopped in t.after,
 * and nbdinfo as the reference for block status.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { type QemuNbdOptions, type QemuNbdServer, startQemuNbd } from '../../src/nbd/qemu-nbd.ts';

export const TEST_ROOT = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
export const MiB = 1024 * 1024;

/** A fresh directory, removed after the test even when it fails. */
export function scratch(t: TestContext): string {
  mkdirSync(TEST_ROOT, { recursive: true });
  const dir = mkdtempSync(join(TEST_ROOT, 'haven-t-nbd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function sh(cmd: string, ...args: string[]): Promise<string> {
  return (await exec(cmd, args, { timeoutMs: 120_000 })).stdout;
}

/** What every test image holds (64 MiB): data runs, a zeroed range, a discarded range, data at the end. */
export const IMAGE_SIZE = 64 * MiB;
export const IMAGE_WRITES = [
  'write -P 0xab 1M 64k',
  'write -P 0x11 4M 3M',
  'discard 5M 512k',
  'write -z 10M 1M',
  'write -P 0x77 40M 2M',
  'write -P 0x5a 20971521 1000',
  'write -P 0x33 63M 1M',
];

/** Creates `name` (raw or qcow2) with IMAGE_WRITES applied; `bitmap` adds an enabled dirty bitmap first. */
export async function makeImage(
  dir: string,
  name: string,
  format: 'raw' | 'qcow2',
  bitmap?: string,
): Promise<string> {
  const path = join(dir, name);
  await sh('qemu-img', 'create', '-q', '-f', format, path, String(IMAGE_SIZE));
  if (bitmap) await sh('qemu-img', 'bitmap', '--add', '--enable', path, bitmap);
  await sh('qemu-io', '-f', format, ...IMAGE_WRITES.flatMap((c) => ['-c', c]), path);
  return path;
}

/** The image's guest-visible bytes, as qemu-img converts them to raw. */
export async function rawBytes(dir: string, image: string, format: 'raw' | 'qcow2'): Promise<Buffer> {
  if (format === 'raw') return readFileSync(image);
  const out = join(dir, `${Math.random().toString(36).slice(2)}-converted.raw`);
  await sh('qemu-img', 'convert', '-f', format, '-O', 'raw', image, out);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

/** Starts qemu-nbd for the test and stops it afterwards. */
export async function serve(
  t: TestContext,
  dir: string,
  o: Omit<QemuNbdOptions, 'pidFile' | 'socketPath'> & { tcp?: boolean },
): Promise<QemuNbdServer> {
  const id = Math.random().toString(36).slice(2, 8);
  const { tcp, ...options } = o;
  const server = await startQemuNbd({
    ...options,
    ...(tcp ? { port: await freePort(), bind: '127.0.0.1' } : { socketPath: join(dir, `nbd-${id}.sock`) }),
    pidFile: join(dir, `qemu-nbd-${id}.pid`),
  });
  t.after(() => server.stop());
  return server;
}

export function connectOptions(s: QemuNbdServer | NbdkitServer): {
  socketPath?: string;
  host?: string;
  port?: number;
  exportName?: string;
} {
  return s.socketPath
    ? { socketPath: s.socketPath, exportName: s.exportName }
    : { host: s.host, port: s.port, exportName: s.exportName };
}

export function uriOf(s: QemuNbdServer | NbdkitServer): string {
  const name = encodeURIComponent(s.exportName);
  return s.socketPath ? `nbd+unix:///${name}?socket=${s.socketPath}` : `nbd://${s.host}:${s.port}/${name}`;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface MapEntry {
  offset: number;
  length: number;
  flags: number;
}

/** `nbdinfo --map[=context] --json`: the reference map. */
export async function nbdinfoMap(uri: string, context?: string): Promise<MapEntry[]> {
  const out = await sh('nbdinfo', context ? `--map=${context}` : '--map', '--json', uri);
  return (JSON.parse(out) as { offset: number; length: number; type: number }[]).map((e) => ({
    offset: e.offset,
    length: e.length,
    flags: e.type,
  }));
}

export interface NbdkitServer {
  readonly pid: number;
  readonly socketPath: string;
  readonly host?: undefined;
  readonly port?: undefined;
  readonly exportName: string;
  stop(): Promise<void>;
}

/** Starts nbdkit in the foreground as our child; ready when its pid file appears (nbdkit -P). */
export async function nbdkit(t: TestContext, dir: string, args: string[]): Promise<NbdkitServer> {
  const id = Math.random().toString(36).slice(2, 8);
  const socketPath = join(dir, `nbdkit-${id}.sock`);
  const pidFile = join(dir, `nbdkit-${id}.pid`);
  const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-U', socketPath, '-P', pidFile, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // nbdkit waits for connected clients before honouring SIGTERM, and t.after hooks run in the
  // order they were registered (this one before the clients' close): do not wait for long.
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    }
  };
  t.after(stop);
  const deadline = Date.now() + 30_000;
  while (!existsSync(pidFile)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`nbdkit did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return { pid: child.pid!, socketPath, exportName: '', stop };
}

/** A seeded PRNG, so random ranges in tests reproduce. */
export function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n);
  };
}
