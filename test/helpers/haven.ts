/**
 * Running the real `haven` command in tests, each test with its own state, run and log
 * directories (so catalogs and sockets of parallel tests never meet).
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { HAVEN_BIN } from '../../src/transport/index.ts';

export interface HavenEnv {
  /** HAVEN_STATE_DIR, HAVEN_RUN_DIR, HAVEN_LOG_DIR (and anything else) for the child. */
  env: NodeJS.ProcessEnv;
  stateDir: string;
  /** The haven to run (default this tree's bin/haven.mjs; the package tests run an installed one). */
  bin?: string;
}

export async function havenEnv(dir: string, extra: NodeJS.ProcessEnv = {}): Promise<HavenEnv> {
  const stateDir = join(dir, 'state');
  await mkdir(stateDir, { recursive: true });
  return {
    stateDir,
    env: {
      ...process.env,
      HAVEN_STATE_DIR: stateDir,
      HAVEN_RUN_DIR: join(dir, 'run'),
      HAVEN_LOG_DIR: join(dir, 'log'),
      HAVEN_CONFIG: extra.HAVEN_CONFIG ?? join(dir, 'no-config.yaml'),
      ...extra,
    },
  };
}

export interface HavenResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunHavenOptions {
  /** Sends this signal to the process after the given milliseconds (crash tests). */
  killAfterMs?: number;
  /** Kill when this settles (resolved: kill; rejected: leave the run alone). */
  killOn?: Promise<unknown>;
  killSignal?: NodeJS.Signals;
  timeoutMs?: number;
  /** Working directory of the command (default this process's). */
  cwd?: string;
}

export function runHaven(h: HavenEnv, args: string[], o: RunHavenOptions = {}): Promise<HavenResult> {
  return new Promise((resolve, reject) => {
    const env = { ...h.env };
    // A config file that does not exist is fine unless named explicitly; tests name none.
    if (env.HAVEN_CONFIG?.endsWith('no-config.yaml')) delete env.HAVEN_CONFIG;
    const child = spawn(process.execPath, [h.bin ?? HAVEN_BIN, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(o.cwd ? { cwd: o.cwd } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timers: NodeJS.Timeout[] = [];
    if (o.killAfterMs !== undefined) {
      timers.push(setTimeout(() => child.kill(o.killSignal ?? 'SIGKILL'), o.killAfterMs));
    }
    o.killOn?.then(
      () => {
        if (child.exitCode === null && child.signalCode === null) child.kill(o.killSignal ?? 'SIGKILL');
      },
      () => {},
    );
    timers.push(setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 600_000));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      for (const t of timers) clearTimeout(t);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Runs haven and parses its --json output, failing with stderr when it did not exit 0. */
export async function havenJson<T = unknown>(h: HavenEnv, args: string[]): Promise<T> {
  const r = await runHaven(h, [...args, '--json']);
  if (r.code !== 0) throw new Error(`haven ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}
