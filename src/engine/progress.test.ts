import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressTracker } from './progress.ts';

test('rate and ETA follow the bytes fed over time', () => {
  let t = 0;
  const p = new ProgressTracker(100_000_000, 'web01', () => t);
  for (let i = 0; i < 20; i++) {
    t += 500;
    p.add(5_000_000, 1_000_000);
  }
  const s = p.snapshot();
  assert.equal(s.bytesDone, 100_000_000);
  assert.equal(s.bytesSent, 20_000_000);
  assert.ok(Math.abs(s.rate - 10_000_000) < 1, `rate ${s.rate}`);
  assert.equal(s.etaMs, 0);
  assert.equal(s.elapsedMs, 10_000);
});

test('ETA is unknown before any rate is measured', () => {
  const p = new ProgressTracker(10, undefined, () => 0);
  assert.equal(p.snapshot().etaMs, undefined);
});
