/**
 * Where a `haven protect` run's wall time goes: its run log (`haven --log-file`, which holds the
 * receiver's lines too) split at the first message of each phase.
 */
import { readFileSync } from 'node:fs';
import { median } from './stats.ts';

export interface Phase {
  name: string;
  seconds: number;
}

const COMMIT_PHASE_NAME = 'commit (rotation, fsync)';

/** Log messages that start each phase of a run (the sender's run log, receiver events included). */
export const MARKERS: Array<[string, RegExp]> = [
  ['process start, module loading', /^run log opened$/],
  // "starting receiver" until issue 14's reshaping: --baseline may run a Haven from before it.
  ['catalog, inventory, virsh', /^starting (the )?receiver$/],
  ['receiver start', /^target: session started/],
  ['checkpoint + backup-begin', /^point in time taken$/],
  ['delta open, NBD connect', /^nbd: connected$/],
  ['read + send + stage (data)', /^target: delta durable/],
  [COMMIT_PHASE_NAME, /^target: generation committed/],
];

/** Splits a run's wall time at the first occurrence of each marker in its log. */
export function phasesOf(logFile: string, startedAt: number, seconds: number): Phase[] {
  const times = new Map<string, number>();
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line) continue;
    let rec: { t?: string; msg?: string };
    try {
      rec = JSON.parse(line) as { t?: string; msg?: string };
    } catch {
      continue;
    }
    for (const [name, re] of MARKERS) {
      if (!times.has(name) && rec.msg && rec.t && re.test(rec.msg)) times.set(name, Date.parse(rec.t));
    }
  }
  const phases: Phase[] = [];
  let prev = startedAt;
  let prevName = 'spawn';
  for (const [name] of MARKERS) {
    const t = times.get(name);
    if (t === undefined) continue;
    phases.push({ name, seconds: (t - prev) / 1000 });
    prev = t;
    prevName = name;
  }
  phases.push({
    name: prevName === 'spawn' ? 'whole run' : 'finish (checkpoint cleanup, backup end, exit)',
    seconds: startedAt / 1000 + seconds - prev / 1000,
  });
  return phases;
}

export const COMMIT_PHASE = COMMIT_PHASE_NAME;

/** Seconds of a run's commit phase (NaN when its log has no commit). */
export function commitSecondsOf(phases: Phase[]): number {
  return phases.find((p) => p.name === COMMIT_PHASE)?.seconds ?? Number.NaN;
}

/** The median of each phase over runs (a phase missing from a run's log counts as 0 s there). */
export function phaseMedians(runs: Phase[][]): Record<string, number> {
  const names = [...new Set(runs.flatMap((ps) => ps.map((p) => p.name)))];
  return Object.fromEntries(
    names.map((n) => [n, median(runs.map((ps) => ps.find((p) => p.name === n)?.seconds ?? 0))]),
  );
}
