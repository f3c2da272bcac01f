import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProgressSnapshot } from '../engine/index.ts';
import { barPayload, readingSnapshot } from './progress-bar.ts';
import { describeProgress, LINE_EVERY_MS, ProgressLines, percentDone } from './progress-lines.ts';

const MiB = 1024 * 1024;

function snap(done: number, extra: Partial<ProgressSnapshot> = {}): ProgressSnapshot {
  return {
    phase: 'sending',
    disk: 'vda',
    bytesDone: done,
    bytesTotal: 200 * MiB,
    bytesSent: done,
    rate: 2 * MiB,
    etaMs: 5000,
    elapsedMs: 1000,
    ...extra,
  };
}

test('a line at the start, at each 5 % passed, on a phase change and every 30 s', () => {
  let now = 0;
  const lines: string[] = [];
  const p = new ProgressLines(
    (l) => lines.push(l),
    () => now,
  );
  p.update('k', 'web01 → dr', snap(0));
  assert.equal(lines.length, 1, 'the first snapshot');
  assert.match(
    lines[0]!,
    /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d web01 → dr: sending vda 0% 0 B of 200 MiB, 2.00 MiB\/s, ETA 5.0s\n$/,
  );
  now = 2000;
  p.update('k', 'web01 → dr', snap(9 * MiB));
  assert.equal(lines.length, 1, '4.5 %: no step passed');
  now = 4000;
  p.update('k', 'web01 → dr', snap(10 * MiB));
  assert.equal(lines.length, 2, '5 %');
  assert.match(lines[1]!, / 5% 10.0 MiB of 200 MiB/);
  now = 4200;
  p.update('k', 'web01 → dr', snap(60 * MiB));
  assert.equal(lines.length, 2, 'steps within a second of the last line wait');
  now = 5200;
  p.update('k', 'web01 → dr', snap(61 * MiB));
  assert.equal(lines.length, 3, 'then one line for all of them');
  assert.match(lines[2]!, / 30% /);
  now = 5300;
  p.update('k', 'web01 → dr', snap(61 * MiB, { disk: 'vdb' }));
  assert.equal(lines.length, 4, 'a new disk at once');
  now = 5300 + LINE_EVERY_MS - 1;
  p.update('k', 'web01 → dr', snap(62 * MiB, { disk: 'vdb' }));
  assert.equal(lines.length, 4);
  now = 5300 + LINE_EVERY_MS;
  p.update('k', 'web01 → dr', snap(62 * MiB, { disk: 'vdb' }));
  assert.equal(lines.length, 5, 'a stalled copy still says so every 30 s');
  p.update('other', 'db01 → dr', snap(0));
  assert.equal(lines.length, 6, 'each copy has its own pace');
  p.done('k');
  p.update('k', 'web01 → dr', snap(62 * MiB, { disk: 'vdb' }));
  assert.equal(lines.length, 7, 'a finished key starts afresh');
});

test('percent and description: no raw byte counts, unknown ETA and total', () => {
  assert.equal(percentDone({ bytesDone: 5, bytesTotal: 0 }), 0);
  assert.equal(percentDone({ bytesDone: 300, bytesTotal: 200 }), 100);
  assert.equal(
    describeProgress(snap(13 * MiB, { etaMs: undefined, disk: undefined, phase: 'staging' })),
    'staging 6% 13.0 MiB of 200 MiB, 2.00 MiB/s, ETA ?',
  );
});

test('the bar’s payload has no field cli-progress fills itself', () => {
  const payload = barPayload(snap(13 * MiB));
  for (const own of ['value', 'total', 'percentage', 'eta', 'eta_formatted', 'duration', 'bar']) {
    assert.ok(!(own in payload), `${own} is cli-progress's token`);
  }
  assert.equal(payload.total_text, '200 MiB');
  assert.equal(payload.done_text, '13.0 MiB');
});

test('a verify’s progress has an ETA once it has read something', () => {
  assert.equal(readingSnapshot(0, 1000, 500).etaMs, undefined);
  const s = readingSnapshot(250, 1000, 1000);
  assert.equal(s.rate, 250);
  assert.equal(s.etaMs, 3000);
  assert.equal(barPayload(s).eta_text === '?', false);
  assert.equal(readingSnapshot(1000, 1000, 2000).etaMs, 0);
});
