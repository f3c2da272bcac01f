/**
 * Times as listings show them (core/time-format.ts): `2026-11-23 01:30:00`, wall-clock time in the
 * configuration's time zone (the host's without one), the zone named once in the column header;
 * optionally with how long ago or how soon ("2026-11-23 01:30:00 (in 5h2m)"). --json stays ISO.
 */
import { formatLocalTime, timeZoneName } from '../core/time-format.ts';
import { formatDuration } from '../core/units.ts';

export function formatTime(d: Date | string | null | undefined, timeZone?: string): string {
  if (!d) return '-';
  const date = typeof d === 'string' ? new Date(d) : d;
  // A string that is not a time (an old manifest's free text) is shown as it is.
  if (Number.isNaN(date.getTime())) return String(d);
  return formatLocalTime(date, timeZone);
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

/** A time column's header, naming the zone its times are in: `next run (Europe/Berlin)`. */
export function timeHeader(name: string, timeZone?: string): string {
  return `${name} (${timeZoneName(timeZone)})`;
}
