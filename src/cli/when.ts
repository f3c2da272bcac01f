/**
 * Times as listings show them: local wall-clock time in the configuration's time zone, with how
 * long ago or how soon ("2026-11-23 01:30 (in 5h2m)").
 */
import { formatDuration } from '../core/units.ts';

export function formatTime(d: Date | null | undefined, timeZone?: string): string {
  if (!d) return '-';
  return d.toLocaleString('sv-SE', { timeZone, hour12: false }).slice(0, 16);
}

export function formatWhenRelative(
  d: Date | null | undefined,
  timeZone: string | undefined,
  now: Date,
): string {
  if (!d) return '-';
  const delta = d.getTime() - now.getTime();
  const rel = delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
  return `${formatTime(d, timeZone)} (${rel})`;
}
