import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HavenError } from '../core/errors.ts';
import { DeltaTracker } from './delta-tracker.ts';

const C = 65536;
const disks = [
  { name: 'vda', size: 10 * C },
  { name: 'vdb', size: 3 * C + 512 },
];

function tracker(resume: Record<string, number> | null = null) {
  return new DeltaTracker(
    disks,
    C,
    'blake3',
    resume ? { deltaId: 'd', pointInTime: 'p', watermarks: resume, stagedBytes: 0 } : null,
    4 * C,
  );
}

function codeOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return (e as HavenError).code;
  }
}

const data = (disk: number, offset: number, length: number) => ({
  disk,
  kind: 'data' as const,
  offset,
  length,
});
const zero = (disk: number, offset: number, length: number) => ({
  disk,
  kind: 'zero' as const,
  offset,
  length,
});

describe('DeltaTracker ranges', () => {
  it('accepts aligned extents inside the disk, including a short last chunk', () => {
    const t = tracker();
    assert.equal(
      codeOf(() => t.checkExtent(data(0, 0, C))),
      null,
    );
    assert.equal(
      codeOf(() => t.checkExtent(data(1, 3 * C, 512))),
      null,
    );
    assert.equal(
      codeOf(() => t.checkExtent(zero(0, 0, 10 * C))),
      null,
    );
  });

  it('rejects a disk index out of range', () => {
    assert.equal(
      codeOf(() => tracker().checkExtent(data(2, 0, C))),
      'PROTO_BAD_DISK',
    );
    assert.equal(
      codeOf(() => tracker().diskByName('vdc')),
      'PROTO_BAD_DISK',
    );
  });

  it('rejects unaligned, empty, oversized and out-of-disk extents', () => {
    const t = tracker();
    for (const e of [
      data(0, 512, C),
      data(0, 0, C + 1),
      data(0, 0, 0),
      data(0, 9 * C, 2 * C),
      zero(1, 0, 3 * C + 513),
      data(0, 0, 5 * C),
      data(1, 3 * C, 511),
      data(0, -C, C),
    ]) {
      assert.equal(
        codeOf(() => t.checkExtent(e)),
        'PROTO_BAD_RANGE',
        JSON.stringify(e),
      );
    }
  });

  it('wants ascending order, disks in OPEN order', () => {
    const t = tracker();
    t.accept(data(0, 2 * C, C));
    assert.equal(
      codeOf(() => t.checkExtent(data(0, C, C))),
      'PROTO_OUT_OF_ORDER',
    );
    assert.equal(
      codeOf(() => t.checkExtent(data(0, 2 * C, C))),
      'PROTO_OUT_OF_ORDER',
    );
    assert.equal(
      codeOf(() => t.checkExtent(data(0, 3 * C, C))),
      null,
    );
    t.accept(data(1, 0, C));
    assert.equal(
      codeOf(() => t.checkExtent(data(0, 8 * C, C))),
      'PROTO_OUT_OF_ORDER',
    );
  });

  it('refuses extents below a resumed watermark', () => {
    const t = tracker({ vda: 4 * C, vdb: 0 });
    assert.equal(
      codeOf(() => t.checkExtent(data(0, 3 * C, C))),
      'PROTO_OUT_OF_ORDER',
    );
    assert.equal(
      codeOf(() => t.checkExtent(data(0, 4 * C, C))),
      null,
    );
    assert.equal(
      codeOf(() => t.checkExtent(data(1, 0, C))),
      null,
    );
  });
});

describe('DeltaTracker marks and watermarks', () => {
  it('a mark sets its disk and completes earlier disks', () => {
    const t = tracker();
    assert.deepEqual(t.mark(0, 4 * C), [4 * C, 0]);
    assert.deepEqual(t.mark(1, C), [10 * C, C]);
    assert.deepEqual(t.mark(1, 3 * C + 512), [10 * C, 3 * C + 512]);
    assert.deepEqual(t.watermarksByName(), { vda: 10 * C, vdb: 3 * C + 512 });
  });

  it('starts from resumed watermarks and never goes below them', () => {
    const t = tracker({ vda: 6 * C, vdb: 2 * C });
    assert.deepEqual(t.mark(0, 2 * C), [6 * C, 2 * C]);
  });

  it('rejects marks beyond the disk, unaligned or going backwards', () => {
    const t = tracker();
    assert.equal(
      codeOf(() => t.mark(0, 11 * C)),
      'PROTO_BAD_RANGE',
    );
    assert.equal(
      codeOf(() => t.mark(0, 100)),
      'PROTO_BAD_RANGE',
    );
    assert.equal(
      codeOf(() => t.mark(3, 0)),
      'PROTO_BAD_DISK',
    );
    t.mark(1, C);
    assert.equal(
      codeOf(() => t.mark(0, 10 * C)),
      'PROTO_OUT_OF_ORDER',
    );
    assert.equal(
      codeOf(() => t.checkExtent(data(1, 0, C))),
      'PROTO_OUT_OF_ORDER',
    );
  });
});

describe('DeltaTracker digest requests', () => {
  it('bounds count and range', () => {
    const t = tracker();
    assert.equal(
      codeOf(() => t.checkDigestsRequest(1, 0, 4, 100)),
      null,
    );
    assert.equal(
      codeOf(() => t.checkDigestsRequest(1, 0, 5, 100)),
      'PROTO_BAD_RANGE',
    );
    assert.equal(
      codeOf(() => t.checkDigestsRequest(0, 0, 0, 100)),
      'PROTO_BAD_RANGE',
    );
    assert.equal(
      codeOf(() => t.checkDigestsRequest(0, 0, 10, 5)),
      'PROTO_BAD_RANGE',
    );
    assert.equal(
      codeOf(() => t.checkDigestsRequest(2, 0, 1, 5)),
      'PROTO_BAD_DISK',
    );
  });
});

describe('DeltaTracker END_DELTA verification', () => {
  function sent() {
    const s = tracker();
    const r = tracker();
    const root = Buffer.alloc(32, 7);
    for (const t of [s, r]) {
      t.accept(data(0, 0, C), root);
      t.accept(zero(0, C, 9 * C));
      t.accept(data(1, 0, 3 * C + 512), root);
    }
    return { s, r };
  }
  const summary = {
    disks: { vda: { dataBytes: 5 * C, zeroBytes: 9 * C }, vdb: { dataBytes: 3 * C + 512, zeroBytes: 0 } },
  };

  it('accepts matching totals and digest', () => {
    const { s, r } = sent();
    r.verifyEnd({ summary, attempt: s.totals() });
  });

  it('rejects a different digest, different counts, or a summary below the attempt', () => {
    const { s, r } = sent();
    const a = s.totals();
    assert.equal(
      codeOf(() => r.verifyEnd({ summary, attempt: { ...a, digest: '0'.repeat(64) } })),
      'PROTO_DELTA_MISMATCH',
    );
    const fewer = structuredClone(a);
    fewer.disks.vda!.frames = 1;
    assert.equal(
      codeOf(() => r.verifyEnd({ summary, attempt: fewer })),
      'PROTO_DELTA_MISMATCH',
    );
    const small = structuredClone(summary);
    small.disks.vda.dataBytes = 0;
    assert.equal(
      codeOf(() => r.verifyEnd({ summary: small, attempt: a })),
      'PROTO_DELTA_MISMATCH',
    );
  });

  it('rejects a summary that does not list exactly the disks', () => {
    const { s, r } = sent();
    const extra = { disks: { ...summary.disks, vdc: { dataBytes: 0, zeroBytes: 0 } } };
    assert.equal(
      codeOf(() => r.verifyEnd({ summary: extra, attempt: s.totals() })),
      'PROTO_BAD_FRAME',
    );
    const { vda } = summary.disks;
    assert.equal(
      codeOf(() => r.verifyEnd({ summary: { disks: { vda } }, attempt: s.totals() })),
      'PROTO_BAD_FRAME',
    );
    assert.equal(
      codeOf(() => r.verifyEnd({ summary, attempt: s.totals(), imageDigests: { vdx: 'a'.repeat(64) } })),
      'PROTO_BAD_FRAME',
    );
  });

  it('the attempt digest depends on order and content', () => {
    const a = tracker();
    const b = tracker();
    a.accept(data(0, 0, C), Buffer.alloc(32, 1));
    b.accept(data(0, 0, C), Buffer.alloc(32, 2));
    assert.notEqual(a.totals().digest, b.totals().digest);
  });
});
