/**
 * Before and after a change: this checkout's Haven against another checkout's (`--baseline` of
 * bench/replicate.ts), both timed in the same reps, back to back in alternating order. The ratio
 * is taken per rep and its median reported: the two runs of a rep share the machine's load of
 * that moment, so the ratio is steadier than the ratio of the two medians.
 */
import Table from 'cli-table3';
import { median } from './stats.ts';

/** What the comparison needs of one `haven protect` run. */
export interface TimedRun {
  seconds: number;
  senderCpuSeconds: number;
  receiverCpuSeconds: number;
  senderPeakRss: number;
  receiverPeakRss: number;
}

/** A rep in which both ran (`baseline` is absent only when no baseline was given). */
interface PairedRep {
  haven: TimedRun;
  baseline?: TimedRun;
  havenSlot?: 'copy' | 'recycle';
}

export interface PairStats {
  reps: number;
  /** Median wall time of this checkout's runs, and of the baseline's. */
  havenSeconds: number;
  baselineSeconds: number;
  /** Fastest and slowest run of each. */
  havenRange: [number, number];
  baselineRange: [number, number];
  /** Median over reps of this checkout's time / the baseline's: below 1 is faster than before. */
  ratio: number;
  /** Every rep's ratio, in rep order. */
  ratios: number[];
  /** Median CPU seconds of sender + receiver. */
  havenCpuSeconds: number;
  baselineCpuSeconds: number;
  /** Highest peak RSS of the sender or the receiver over the reps. */
  havenPeakRss: number;
  baselinePeakRss: number;
}

export interface BeforeAfter {
  full: PairStats;
  /** Every incremental rep, those that fill new slots included. */
  incremental: PairStats;
  /** The incremental reps that recycle a slot (Haven's steady state), when there are any. */
  incrementalSteady?: PairStats;
}

function pairStats(reps: readonly PairedRep[]): PairStats {
  const paired = reps.flatMap((r) => (r.baseline ? [{ haven: r.haven, baseline: r.baseline }] : []));
  const of = (k: 'haven' | 'baseline') => paired.map((r) => r[k]);
  const range = (runs: TimedRun[]): [number, number] => [
    Math.min(...runs.map((h) => h.seconds)),
    Math.max(...runs.map((h) => h.seconds)),
  ];
  const cpu = (runs: TimedRun[]) => median(runs.map((h) => h.senderCpuSeconds + h.receiverCpuSeconds));
  const peak = (runs: TimedRun[]) =>
    Math.max(...runs.map((h) => Math.max(h.senderPeakRss, h.receiverPeakRss)));
  const ratios = paired.map((r) => r.haven.seconds / r.baseline.seconds);
  return {
    reps: paired.length,
    havenSeconds: median(of('haven').map((h) => h.seconds)),
    baselineSeconds: median(of('baseline').map((h) => h.seconds)),
    havenRange: range(of('haven')),
    baselineRange: range(of('baseline')),
    ratio: median(ratios),
    ratios,
    havenCpuSeconds: cpu(of('haven')),
    baselineCpuSeconds: cpu(of('baseline')),
    havenPeakRss: peak(of('haven')),
    baselinePeakRss: peak(of('baseline')),
  };
}

export function beforeAfter(full: readonly PairedRep[], inc: readonly PairedRep[]): BeforeAfter {
  const steady = inc.filter((r) => r.havenSlot === 'recycle');
  return {
    full: pairStats(full),
    incremental: pairStats(inc),
    ...(steady.length ? { incrementalSteady: pairStats(steady) } : {}),
  };
}

/** The comparison as a table: medians, ranges, the per-rep ratio, CPU and memory. */
export function formatBeforeAfter(c: BeforeAfter, style: ConstructorParameters<typeof Table>[0]): string {
  const s = (v: number) => v.toFixed(2);
  const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;
  const t = new Table({
    ...style,
    head: [
      'this checkout / baseline (median)',
      'reps',
      'this',
      'baseline',
      'ratio (per rep)',
      'CPU s',
      'peak RSS',
    ],
  });
  const row = (name: string, p: PairStats) => [
    name,
    String(p.reps),
    `${s(p.havenSeconds)} s (${s(p.havenRange[0])}–${s(p.havenRange[1])})`,
    `${s(p.baselineSeconds)} s (${s(p.baselineRange[0])}–${s(p.baselineRange[1])})`,
    `${s(p.ratio)} (${p.ratios.map(s).join(' ')})`,
    `${s(p.havenCpuSeconds)} / ${s(p.baselineCpuSeconds)}`,
    `${mib(p.havenPeakRss)} / ${mib(p.baselinePeakRss)}`,
  ];
  t.push(row('full', c.full), row('incremental, all reps', c.incremental));
  if (c.incrementalSteady) t.push(row('incremental, steady state', c.incrementalSteady));
  return `\nbefore / after: ratio = this checkout's time / the baseline's, below 1 is faster\n${t.toString()}`;
}
