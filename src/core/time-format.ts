/**
 * One way to show a point in time to people, everywhere (CLI tables, progress lines, the
 * dashboard): `2026-12-05 21:15:03`, wall-clock time in a named zone, with the zone said once
 * (in a table's header, or the page's). Machine output (--json, the API) stays ISO 8601 UTC.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string | undefined): Intl.DateTimeFormat {
  const key = timeZone ?? '';
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(key, f);
  }
  return f;
}

/** `2026-12-05 21:15:03` in `timeZone` (an IANA name; default the host's zone). */
export function formatLocalTime(d: Date, timeZone?: string): string {
  const parts: Record<string, string> = {};
  // formatToParts, not a locale's pattern: the order and separators are ours whatever ICU holds.
  for (const p of formatter(timeZone).formatToParts(d)) parts[p.type] = p.value;
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

/** The zone times are shown in: the IANA name given, or the host's (`UTC` when it has none). */
export function timeZoneName(timeZone?: string): string {
  return timeZone ?? (Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');
}
