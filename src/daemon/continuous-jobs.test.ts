import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cutSchedule } from './continuous-jobs.ts';

test('cutSchedule: true once per scheduled time, a missed time not made up', () => {
  let now = new Date('2026-05-04T10:00:30Z');
  const due = cutSchedule('*/5 * * * *', 'UTC', () => now);
  assert.equal(due(), false, 'before the first time');
  now = new Date('2026-05-04T10:05:00Z');
  assert.equal(due(), true, 'the time has come');
  assert.equal(due(), false, 'only once');
  now = new Date('2026-05-04T10:09:59Z');
  assert.equal(due(), false);
  // Down from 10:10 to 10:31: one cut, then the next time is 10:35.
  now = new Date('2026-05-04T10:31:00Z');
  assert.equal(due(), true);
  assert.equal(due(), false);
  now = new Date('2026-05-04T10:34:59Z');
  assert.equal(due(), false);
  now = new Date('2026-05-04T10:35:00Z');
  assert.equal(due(), true);
});
