/**
 * Running a measured program: wall time from spawn to exit, its output, and the peak memory and
 * CPU time of every process in its tree.
 *
 * Peak memory is the kernel's own high-water mark (`VmHWM` in /proc/<pid>/status), sampled while
 * the tree runs. The kernel keeps that figure exact whenever the peak happened, so the sampling
 * interval only decides which short-lived processes are seen at all, not how accurate a peak is
 * (a process's figure is its last reading, taken at most one interval before it exits). Nothing
 * is injected into the measured programs. CPU time is read from /proc/<pid>/stat at the same
 * samples, so it misses at most one interval of each process's life.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcPeak {
  pid: number;
  parent: number | undefined;
  /** The command line, arguments joined by spaces. */
  cmd: string;
  /** Peak resident set size in bytes (VmHWM). */
  peakRss: number;
  /** CPU time (user + system, all threads) at the last sample. */
  cpuSeconds: number;
}

export interface MeasuredRun {
  command: string;
  args: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall-clock time from spawn to exit. */
  seconds: number;
  /** Wall-clock time (ms since the epoch) of the spawn, to line up with timestamps in logs. */
  startedAt: number;
  /** Every process of the tree seen while it ran, root first. */
  procs: ProcPeak[];
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** Direct children of a process: each thread keeps its own list (threads may spawn too). */
function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const t of tasks) {
    const text = readText(`/proc/${pid}/task/${t}/children`);
    if (!text) continue;
    for (const w of text.split(' ')) if (w.trim()) out.push(Number(w));
  }
  return out;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

function cpuSecondsOf(pid: number): number | undefined {
  const text = readText(`/proc/${pid}/stat`);
  if (!text) return undefined;
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15, so 11 and 12 after the state (field 3).
  return (Number(f[11]) + Number(f[12])) / USER_HZ;
}

function hwmBytes(pid: number): number | undefined {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readText(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) * 1024 : undefined;
}

/** Samples a process tree's peak memory until stopped. */
export class TreeSampler {
  private readonly seen = new Map<number, ProcPeak>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly root: number,
    intervalMs = 50,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    const walk = (pid: number, parent: number | undefined) => {
      const hwm = hwmBytes(pid);
      if (hwm === undefined) return;
      const cmd = (readText(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' ');
      // A zombie has no command line: its last reading stands.
      if (!cmd) return;
      let p = this.seen.get(pid);
      // Between fork and exec a child shows its parent's command line and memory; exec starts a
      // new high-water mark, so figures seen under an earlier command line are dropped.
      if (!p || p.cmd !== cmd) {
        p = { pid, parent, cmd, peakRss: 0, cpuSeconds: 0 };
        this.seen.set(pid, p);
      }
      p.peakRss = Math.max(p.peakRss, hwm);
      p.cpuSeconds = Math.max(p.cpuSeconds, cpuSecondsOf(pid) ?? 0);
      for (const c of childrenOf(pid)) walk(c, pid);
    };
    walk(this.root, undefined);
  }

  stop(): ProcPeak[] {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return [...this.seen.values()];
  }
}

const running = new Set<ChildProcess>();

/**
 * Stops every program runMeasured is running (an interrupted benchmark must not leave them, nor
 * clean up under their feet): resolves when all have exited, or after `timeoutMs`.
 */
export function killRunning(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<void> {
  const exits = [...running].map((c) => new Promise<void>((resolve) => c.once('close', () => resolve())));
  for (const c of running) c.kill(signal);
  return Promise.race([
    Promise.all(exits).then(() => {}),
    new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
  ]);
}

/** Runs a program to completion, measuring it. Never rejects on a non-zero exit: check `code`. */
export function runMeasured(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; sampleMs?: number } = {},
): Promise<MeasuredRun> {
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const t0 = process.hrtime.bigint();
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    const sampler = child.pid === undefined ? undefined : new TreeSampler(child.pid, options.sampleMs);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let seconds = 0;
    child.on('exit', () => {
      seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    });
    child.on('error', (e) => {
      running.delete(child);
      sampler?.stop();
      reject(e);
    });
    child.on('close', (code, signal) => {
      running.delete(child);
      const procs = sampler?.stop() ?? [];
      resolve({
        command,
        args,
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        seconds: seconds || Number(process.hrtime.bigint() - t0) / 1e9,
        startedAt,
        procs,
      });
    });
  });
}

/** Like runMeasured, but a failure (non-zero exit, signal) throws with the program's stderr. */
export async function mustRun(
  command: string,
  args: string[],
  options: Parameters<typeof runMeasured>[2] = {},
): Promise<MeasuredRun> {
  const r = await runMeasured(command, args, options);
  if (r.code !== 0) {
    const tail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-15).join('\n');
    throw new Error(
      `${command} ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`}) after ${r.seconds.toFixed(1)} s:\n${tail}`,
    );
  }
  return r;
}

/** CPU seconds of a run's processes whose command line matches (all of them by default). */
export function cpuOf(run: MeasuredRun, match: (p: ProcPeak) => boolean = () => true): number {
  return run.procs.filter(match).reduce((s, p) => s + p.cpuSeconds, 0);
}

/** The highest peak among a run's processes whose command line matches. */
export function peakOf(run: MeasuredRun, match: (p: ProcPeak) => boolean = () => true): number {
  return run.procs.filter(match).reduce((m, p) => Math.max(m, p.peakRss), 0);
}

/**
 * On SIGINT or SIGTERM: stops the programs runMeasured runs, then `cleanup`, then exits 130 (an
 * interrupted benchmark leaves no domain, mount or program behind). Returns the unregistration.
 */
export function onInterrupt(cleanup: () => Promise<void>, say: (line: string) => void): () => void {
  const handler = () => {
    say('interrupted: stopping the running program, cleaning up');
    void killRunning()
      .then(cleanup)
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
