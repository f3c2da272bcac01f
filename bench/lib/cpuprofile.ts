/**
 * Summaries of V8 CPU profiles (`node --cpu-prof`): where a process spent its time, by function
 * (self time) and by source file, so a benchmark can say what is slow without a profiler UI.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  file: string;
  /** Profiled wall time. */
  totalMs: number;
  /** Time V8 saw the thread idle (waiting for I/O or other processes). */
  idleMs: number;
  /** Self time by function, largest first. */
  functions: ProfileEntry[];
  /** Self time by source file (node internals and native code grouped by their label). */
  files: ProfileEntry[];
}

function shortUrl(url: string, root: string): string {
  if (!url) return '';
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  if (!path.startsWith('/')) return path;
  const rel = relative(root, path);
  return rel.startsWith('..') ? path : rel;
}

/** Self time per function and per file of one .cpuprofile; `root` shortens file names. */
export function summarizeProfile(file: string, root: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; attributing it to sample i is what DevTools does.
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') idle += us;
    const where = shortUrl(url, root);
    const key = where ? `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}` : functionName;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const fkey = where || functionName;
    files.set(fkey, (files.get(fkey) ?? 0) + us);
  }
  const total = p.endTime - p.startTime;
  const rank = (m: Map<string, number>): ProfileEntry[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), share: total > 0 ? us / total : 0 }));
  return {
    file,
    totalMs: Math.round(total / 1000),
    idleMs: Math.round(idle / 1000),
    functions: rank(fn),
    files: rank(files),
  };
}

/** A profile summary as indented text lines. */
export function formatProfile(s: ProfileSummary, label: string): string[] {
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)}%`;
  const lines = [
    `${label}: ${s.totalMs} ms profiled, ${s.idleMs} ms idle (${s.file})`,
    '  by function (self):',
  ];
  for (const e of s.functions) lines.push(`    ${pct(e.share)} ${String(e.ms).padStart(6)} ms  ${e.name}`);
  lines.push('  by file (self):');
  for (const e of s.files) lines.push(`    ${pct(e.share)} ${String(e.ms).padStart(6)} ms  ${e.name}`);
  return lines;
}
