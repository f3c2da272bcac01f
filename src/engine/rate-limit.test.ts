import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Clock, TokenBucket } from './rate-limit.ts';

/** A clock that advances only when slept on, so the test measures the limiter, not the machine. */
function fakeClock(): Clock & { t: number } {
  const c = {
    t: 0,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms;
    },
  };
  return c;
}

test('sending 100 MiB at 10 MiB/s takes 10 s of (virtual) time, minus the burst', async () => {
  const clock = fakeClock();
  const rate = 10 * 1024 * 1024;
  const bucket = new TokenBucket(rate, 1024 * 1024, clock);
  for (let i = 0; i < 400; i++) await bucket.take(256 * 1024);
  const expected = ((100 * 1024 * 1024 - 1024 * 1024) / rate) * 1000;
  assert.ok(Math.abs(clock.t - expected) < 1, `${clock.t} vs ${expected}`);
});

test('unlimited never waits', async () => {
  const clock = fakeClock();
  const bucket = new TokenBucket(0, 0, clock);
  for (let i = 0; i < 100; i++) await bucket.take(1 << 30);
  assert.equal(clock.t, 0);
  assert.equal(bucket.unlimited, true);
});

test('idle time refills only up to the burst', async () => {
  const clock = fakeClock();
  const bucket = new TokenBucket(1000, 500, clock);
  clock.t += 60_000;
  await bucket.take(1500);
  assert.equal(clock.t, 60_000 + 1000);
});
