import assert from 'node:assert/strict';
import { test } from 'node:test';
import { added, LvListing, ownToken, removed, renamed, retagged } from './listing.ts';
import type { LvInfo } from './report.ts';

function lv(name: string, tags: string[] = ['haven_store=s1', 'haven_size=100'], vg = 'vg_dr'): LvInfo {
  return {
    name,
    vg,
    size: 4 << 20,
    tags,
    attr: 'Vwi-a-tz--',
    pool: 'pool0',
    dataPercent: 0,
    chunkSize: 0,
    discards: '',
    metadataPercent: null,
    whenFull: '',
  };
}

const names = (lvs: readonly LvInfo[] | null) => lvs?.map((l) => `${l.vg}/${l.name}`).sort() ?? null;

test('a listing is kept for the server and lock token it was taken under, and nothing else', () => {
  const listing = new LvListing();
  listing.put('web01', 'tok1', [lv('web01_d_1')], listing.mark());
  assert.deepEqual(names(listing.get('web01', 'tok1')), ['vg_dr/web01_d_1']);
  assert.equal(listing.get('web01', 'tok2'), null, 'a released and re-taken lock has another token');
  assert.equal(listing.get('web01', null), null, 'without the lock nothing is cached');
  assert.equal(listing.get('db01', 'tok1'), null);
  listing.drop();
  assert.equal(listing.get('web01', 'tok1'), null);
  // Taken without the lock: not kept.
  listing.put('web01', null, [lv('web01_d_1')], listing.mark());
  assert.equal(listing.get('web01', null), null);
});

test('the store’s own changes are applied in place; a failed one drops the listing', async () => {
  const listing = new LvListing();
  listing.put('web01', 't', [lv('web01_d_incomplete'), lv('web01_d_1'), lv('other', [])], listing.mark());
  await listing.change(
    async () => {},
    (l) => removed(l, 'vg_dr', 'web01_d_1'),
  );
  await listing.change(
    async () => {},
    (l) => renamed(l, 'vg_dr', 'web01_d_incomplete', 'web01_d_1'),
  );
  await listing.change(
    async () => {},
    (l) => added(l, lv('web01_d_incomplete')),
  );
  assert.deepEqual(names(listing.get('web01', 't')), [
    'vg_dr/other',
    'vg_dr/web01_d_1',
    'vg_dr/web01_d_incomplete',
  ]);
  await listing.change(
    async () => {},
    (l) => retagged(l, 'vg_dr', 'web01_d_1', ['haven_size=100'], ['haven_size=200']),
  );
  assert.deepEqual(listing.get('web01', 't')?.find((l) => l.name === 'web01_d_1')?.tags, [
    'haven_store=s1',
    'haven_size=200',
  ]);
  // A change whose result is unknown (lvextend rounds to extents) drops it.
  await listing.change(async () => {}, null);
  assert.equal(listing.get('web01', 't'), null);
  listing.put('web01', 't', [lv('web01_d_1')], listing.mark());
  await assert.rejects(
    listing.change(
      () => Promise.reject(new Error('lvrename failed')),
      (l) => renamed(l, 'vg_dr', 'web01_d_1', 'web01_d_2'),
    ),
    /lvrename failed/,
  );
  assert.equal(listing.get('web01', 't'), null, 'a failed lvm command leaves the groups unknown');
});

test('another LvmImages of this process changing LVs makes every other listing stale', async () => {
  const mine = new LvListing();
  const other = new LvListing();
  mine.put('web01', 't', [lv('web01_d_1')], mine.mark());
  await other.change(
    async () => {},
    (l) => l,
  );
  assert.equal(mine.get('web01', 't'), null);
  // While a change runs, no listing is trusted, and none taken meanwhile is kept.
  mine.put('web01', 't', [lv('web01_d_1')], mine.mark());
  let finish = () => {};
  const running = other.change(
    () =>
      new Promise<void>((r) => {
        finish = r;
      }),
    (l) => l,
  );
  assert.equal(mine.get('web01', 't'), null);
  const mark = mine.mark();
  mine.put('web01', 't', [lv('web01_d_1')], mark);
  finish();
  await running;
  assert.equal(mine.get('web01', 't'), null);
  // A listing taken across a change (mark before, put after) is not kept either.
  const before = mine.mark();
  await other.change(async () => {}, null);
  mine.put('web01', 't', [lv('web01_d_1')], before);
  assert.equal(mine.get('web01', 't'), null);
});

test('two changes running at once leave the listing dropped (neither result holds the other)', async () => {
  const listing = new LvListing();
  const other = new LvListing();
  listing.put('web01', 't', [lv('web01_d_1'), lv('web01_d_2')], listing.mark());
  let finish = () => {};
  const first = listing.change(
    () =>
      new Promise<void>((r) => {
        finish = r;
      }),
    (l) => removed(l, 'vg_dr', 'web01_d_1'),
  );
  await other.change(
    async () => {},
    (l) => l,
  );
  finish();
  await first;
  assert.equal(listing.get('web01', 't'), null);
});

test('a lock names this process’s token only when it is this pid on this host', () => {
  const holder = { pid: 42, host: 'dr1', token: 'abc', startedAt: 'x' };
  assert.equal(ownToken(holder, 42, 'dr1'), 'abc');
  assert.equal(ownToken(holder, 43, 'dr1'), null);
  assert.equal(ownToken(holder, 42, 'dr2'), null);
  assert.equal(ownToken(null, 42, 'dr1'), null);
});
