import assert from 'node:assert/strict';
import { test } from 'node:test';
import { orderDrives, planStaging, usableBytes } from './plan.ts';

const G = 1024 ** 3;

test('drives: largest first, equal sizes by device path', () => {
  const d = orderDrives([
    { device: '/dev/sdc', totalBytes: 100 },
    { device: '/dev/sdb', totalBytes: 100 },
    { device: '/dev/sda', totalBytes: 50 },
    { device: '/dev/sdd', totalBytes: 200 },
  ]);
  assert.deepEqual(
    d.map((x) => x.device),
    ['/dev/sdd', '/dev/sdb', '/dev/sdc', '/dev/sda'],
  );
});

test('everything fits: all at once, spread largest server first over the drives', () => {
  const plan = planStaging(
    [
      { server: 'small', bytes: 8 * G },
      { server: 'big', bytes: 60 * G },
      { server: 'mid', bytes: 30 * G },
    ],
    [
      { device: '/dev/sdb', totalBytes: 64 * G, usableBytes: 62 * G },
      { device: '/dev/sdc', totalBytes: 40 * G, usableBytes: 39 * G },
    ],
  );
  assert.equal(plan.mode, 'all-at-once');
  assert.deepEqual(Object.fromEntries(plan.assignments), {
    big: '/dev/sdb',
    mid: '/dev/sdc',
    small: '/dev/sdc',
  });
});

test('one server does not fit with the others: one at a time, each on the first drive it fits', () => {
  const plan = planStaging(
    [
      { server: 'a', bytes: 40 },
      { server: 'b', bytes: 15 },
      { server: 'c', bytes: 15 },
    ],
    [{ device: '/dev/loop1', totalBytes: 64, usableBytes: 50 }],
  );
  assert.equal(plan.mode, 'one-at-a-time');
  assert.deepEqual(Object.fromEntries(plan.assignments), {
    a: '/dev/loop1',
    b: '/dev/loop1',
    c: '/dev/loop1',
  });
});

test('a server larger than every drive is copied without staging', () => {
  const plan = planStaging(
    [
      { server: 'huge', bytes: 500 },
      { server: 'b', bytes: 10 },
    ],
    [
      { device: '/dev/b', totalBytes: 100, usableBytes: 90 },
      { device: '/dev/a', totalBytes: 100, usableBytes: 90 },
    ],
  );
  assert.equal(plan.mode, 'one-at-a-time');
  assert.equal(plan.assignments.get('huge'), null);
  assert.equal(plan.assignments.get('b'), '/dev/a', 'equal sizes: alphabetical device path first');
});

test('no drives: one at a time with nothing staged; no servers: trivially all at once', () => {
  const none = planStaging([{ server: 'x', bytes: 1 }], []);
  assert.equal(none.mode, 'one-at-a-time');
  assert.equal(none.assignments.get('x'), null);
  assert.equal(planStaging([], []).mode, 'all-at-once');
});

test('usable space keeps 1% of the drive free', () => {
  assert.equal(usableBytes(1000, 500), 490);
  assert.equal(usableBytes(1000, 5), 0);
});
