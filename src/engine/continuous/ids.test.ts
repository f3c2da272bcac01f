import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JournalInfo } from '../../store/types.ts';
import { adopt, decide, nextGeneration } from './ids.ts';

function journal(
  current: string,
  history: string[],
  tail = 'seg-9',
  extra: Partial<JournalInfo> = {},
): JournalInfo {
  return {
    windowMs: 7_200_000,
    segments: 9,
    points: 9,
    oldest: null,
    newest: null,
    tail: { id: tail, seq: 9, pointInTime: 'haven-cp-9', consistent: true, generationId: current },
    ids: { current, history },
    ...extra,
  };
}

const primary = { current: 'b', history: ['a'] };
const lane = { generationId: 'b', tail: 'seg-9', inflight: null };

test('minting keeps the old lineage in the history; adopting takes the source’s', () => {
  const first = nextGeneration(null);
  assert.match(first.current, /^[0-9a-f]{16}$/);
  assert.deepEqual(first.history, []);
  const second = nextGeneration(first, { side: 'dr', at: 'now' });
  assert.notEqual(second.current, first.current);
  assert.deepEqual(second.history, [first.current]);
  assert.equal(second.lastWriter?.side, 'dr');
  assert.deepEqual(adopt({ current: 'x', history: ['w'] }, 'y'), { current: 'y', history: ['x', 'w'] });
  assert.deepEqual(adopt(null, 'y'), { current: 'y', history: [] });
});

test('an empty target gets a full copy, a periodic store its generation’s checkpoint', () => {
  assert.equal(decide({ primary, lane: null, journal: null, newestGeneration: null }).kind, 'full');
  const d = decide({ primary: null, lane: null, journal: null, newestGeneration: 'haven-x' });
  assert.equal(d.kind, 'checkpoint');
  assert.equal(d.kind === 'checkpoint' ? d.checkpoint : '', 'haven-x');
});

test('the same lineage resyncs from the bitmap only when the bitmap is relative to the target', () => {
  assert.equal(
    decide({ primary, lane, journal: journal('b', ['a']), newestGeneration: null }).kind,
    'bitmap',
  );
  // The target appended the segment whose answer was lost: the pending set still covers it.
  const sent = { ...lane, tail: 'seg-8', inflight: 'haven-cp-9' };
  assert.equal(
    decide({ primary, lane: sent, journal: journal('b', ['a']), newestGeneration: null }).kind,
    'bitmap',
  );
  const other = decide({
    primary,
    lane: { ...lane, tail: 'seg-7' },
    journal: journal('b', ['a']),
    newestGeneration: null,
  });
  assert.equal(other.kind, 'checksum');
  assert.equal(
    decide({ primary, lane: null, journal: journal('b', ['a']), newestGeneration: null }).kind,
    'checksum',
  );
});

test('older lineages resync by checksum; a failed-back lineage is adopted', () => {
  assert.equal(decide({ primary, lane, journal: journal('a', []), newestGeneration: null }).kind, 'checksum');
  const fb = decide({
    primary,
    lane,
    journal: journal('b', ['a'], 'seg-9', { failedBack: { generationId: 'dr1', at: 'then' } }),
    newestGeneration: null,
  });
  assert.equal(fb.kind, 'checksum');
  assert.deepEqual(fb.kind === 'checksum' ? fb.ids : null, { current: 'dr1', history: ['b', 'a'] });
  const none = decide({ primary: null, lane: null, journal: journal('q', []), newestGeneration: null });
  assert.deepEqual(none.kind === 'checksum' ? none.ids.current : '', 'q');
});

test('newer, diverged and unrelated targets are refused unless the operator overwrites', () => {
  const newer = decide({ primary, lane, journal: journal('c', ['b', 'a']), newestGeneration: null });
  assert.equal(newer.kind === 'refuse' ? newer.code : newer.kind, 'CONTINUOUS_DR_NEWER');
  const split = decide({ primary, lane, journal: journal('d', ['a']), newestGeneration: null });
  assert.equal(split.kind === 'refuse' ? split.code : split.kind, 'CONTINUOUS_SPLIT_BRAIN');
  const unrelated = decide({ primary, lane, journal: journal('z', ['y']), newestGeneration: null });
  assert.equal(unrelated.kind === 'refuse' ? unrelated.code : unrelated.kind, 'CONTINUOUS_UNRELATED');
  const forced = decide({
    primary,
    lane,
    journal: journal('z', ['y']),
    newestGeneration: null,
    overwrite: true,
  });
  assert.equal(forced.kind, 'checksum');
});
