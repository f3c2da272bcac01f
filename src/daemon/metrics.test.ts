import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Run, RunStatus } from '../catalog/catalog.ts';
import { FailureCounts } from './metrics.ts';

function run(id: number, status: RunStatus): Run {
  return {
    id,
    kind: 'job',
    job: 'nightly',
    trigger: 'schedule',
    status,
    startedAt: new Date(id * 1000),
    finishedAt: null,
    pid: null,
    summary: null,
    errorCode: null,
    errorMessage: null,
  };
}

test('job failures never go down when retention deletes old runs, and count each failure once', () => {
  const f = new FailureCounts();
  const history = [run(1, 'failed'), run(2, 'ok'), run(3, 'partial'), run(4, 'running'), run(5, 'failed')];
  assert.equal(f.count('nightly', history), 3, 'the catalog’s history is the starting value');
  assert.equal(f.count('nightly', history), 3, 'a second scrape adds nothing');
  // Retention deletes runs 1-3; run 4 (it was running) fails later, run 6 fails.
  const later = [run(4, 'failed'), run(5, 'failed'), run(6, 'failed'), run(7, 'running')];
  assert.equal(f.count('nightly', later), 5);
  // Everything up to 7 pruned; 7 ended ok, 8 failed.
  assert.equal(f.count('nightly', [run(8, 'failed')]), 6);
  assert.equal(f.count('nightly', []), 6, 'an empty catalog does not reset the counter');
  assert.equal(f.count('weekly', []), 0);
});
