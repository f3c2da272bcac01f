import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatLocalTime, timeZoneName } from './time-format.ts';

test('times read YYYY-MM-DD HH:MM:SS in the zone asked for', () => {
  const d = new Date('2026-12-05T20:15:03.456Z');
  assert.equal(formatLocalTime(d, 'UTC'), '2026-12-05 20:15:03');
  assert.equal(formatLocalTime(d, 'Europe/Berlin'), '2026-12-05 21:15:03');
  assert.equal(formatLocalTime(d, 'America/New_York'), '2026-12-05 15:15:03');
  // Midnight is 00, never 24 (hourCycle h23).
  assert.equal(formatLocalTime(new Date('2026-06-01T00:00:00Z'), 'UTC'), '2026-06-01 00:00:00');
  // Summer time: Berlin is UTC+2 in July.
  assert.equal(formatLocalTime(new Date('2026-07-01T10:00:00Z'), 'Europe/Berlin'), '2026-07-01 12:00:00');
});

test('the zone name: the one given, else the host’s', () => {
  assert.equal(timeZoneName('Europe/Berlin'), 'Europe/Berlin');
  assert.equal(timeZoneName(), Intl.DateTimeFormat().resolvedOptions().timeZone);
});
