/**
 * Sizes, rates and durations as operators write them in configuration and flags.
 *
 * Sizes accept IEC (KiB, MiB, GiB, TiB: powers of 1024) and SI (kB, MB, GB, TB: powers of 1000)
 * suffixes, with the single letters K/M/G/T meaning IEC, as qemu-img and LVM read them. A bare
 * number is bytes. Rates are a size followed by "/s". Durations are one or more number+unit
 * groups: "90s", "15m", "26h", "1d12h", "500ms".
 */
import { HavenError } from './errors.ts';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

export class UnitError extends HavenError {
  constructor(code: 'BAD_SIZE' | 'BAD_DURATION' | 'BAD_RATE', message: string, hint: string) {
    super(code, message, { kind: 'usage', hint });
  }
}

/** Parses "50MiB", "2G", "1.5GB", "4096" into bytes (an integer). */
export function parseSize(text: string | number): number {
  if (typeof text === 'number') {
    if (Number.isSafeInteger(text) && text >= 0) return text;
    throw new UnitError('BAD_SIZE', `invalid size ${text}`, 'Use a non-negative whole number of bytes.');
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new UnitError(
      'BAD_SIZE',
      `invalid size "${text}"`,
      'Write a number with an optional unit: 4096, 512KiB, 50MiB, 2GiB, 1TB.',
    );
  }
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) {
    throw new UnitError('BAD_SIZE', `size "${text}" is too large`, 'Use a size below 8 PiB.');
  }
  return bytes;
}

/** Parses "50MiB/s" (or "50MiB") into bytes per second. 0 means unlimited. */
export function parseRate(text: string | number): number {
  if (typeof text === 'number') return parseSize(text);
  const m = /^(.*?)(?:\s*\/\s*s(?:ec)?)?\s*$/i.exec(text);
  try {
    return parseSize(m ? m[1]! : text);
  } catch {
    throw new UnitError(
      'BAD_RATE',
      `invalid rate "${text}"`,
      'Write a size per second: 50MiB/s, 10MB/s, 1GiB/s (0 for unlimited).',
    );
  }
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** Parses "26h", "15m", "1d12h", "500ms", "90" (seconds) into milliseconds. */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (Number.isFinite(text) && text >= 0) return Math.round(text * 1000);
    throw new UnitError('BAD_DURATION', `invalid duration ${text}`, 'Use a non-negative number of seconds.');
  }
  const s = text.trim();
  if (/^\d+(?:\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const re = /(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)/gy;
  let total = 0;
  let pos = 0;
  let match: RegExpExecArray | null = re.exec(s);
  while (match) {
    total += Number(match[1]) * DURATION_UNITS[match[2]!]!;
    pos = re.lastIndex;
    while (s[pos] === ' ') pos++;
    re.lastIndex = pos;
    match = re.exec(s);
  }
  if (pos !== s.length || s.length === 0) {
    throw new UnitError(
      'BAD_DURATION',
      `invalid duration "${text}"`,
      'Write number+unit groups with units ms, s, m, h, d, w: 90s, 15m, 26h, 1d12h.',
    );
  }
  return Math.round(total);
}

const IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < IEC.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${IEC[i]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** 93784000 → "1d2h3m", 4500 → "4.5s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '∞';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  if (rest < 60_000) return `${neg ? '-' : ''}${(rest / 1000).toFixed(rest < 10_000 ? 1 : 0)}s`;
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  if (parts.length === 1 && rest >= 1000) parts.push(`${Math.floor(rest / 1000)}s`);
  return (neg ? '-' : '') + parts.join('');
}
