import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missedFire } from './schedule.ts';

test('missed fire: the newest fire time since the last one acted on, or none', () => {
  const last = new Date('2024-05-01T01:30:00Z');
  // Daily at 01:30 UTC; the daemon was down for three days: one run, for the newest fire time.
  assert.equal(
    missedFire('30 1 * * *', 'UTC', last, new Date('2024-05-04T09:00:00Z'))?.toISOString(),
    '2024-05-04T01:30:00.000Z',
  );
  // Back before the next fire time: nothing missed.
  assert.equal(missedFire('30 1 * * *', 'UTC', last, new Date('2024-05-02T01:29:59Z')), null);
  // Exactly at the fire time: it is due.
  assert.equal(
    missedFire('30 1 * * *', 'UTC', last, new Date('2024-05-02T01:30:00Z'))?.toISOString(),
    '2024-05-02T01:30:00.000Z',
  );
  // Time zones: 01:30 in Berlin (summer) is 23:30 UTC the day before.
  assert.equal(
    missedFire('30 1 * * *', 'Europe/Berlin', last, new Date('2024-05-03T00:00:00Z'))?.toISOString(),
    '2024-05-02T23:30:00.000Z',
  );
  // Every minute for a week: still one run, at the newest minute.
  assert.equal(
    missedFire('* * * * *', 'UTC', last, new Date('2024-05-08T12:00:30Z'))?.toISOString(),
    '2024-05-08T12:00:00.000Z',
  );
});
