import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Semaphore } from '../core/semaphore.ts';
import { Latch, sleep, Turnstile } from './sync.ts';

test('semaphore: at most n holders, waiters in order, double release is harmless', async () => {
  const s = new Semaphore(2);
  const order: string[] = [];
  const a = await s.acquire();
  const b = await s.acquire();
  const c = s.acquire().then((r) => {
    order.push('c');
    return r;
  });
  const d = s.acquire().then((r) => {
    order.push('d');
    return r;
  });
  await sleep(5);
  assert.deepEqual(order, []);
  a();
  a();
  await sleep(5);
  assert.deepEqual(order, ['c'], 'one release lets one waiter in');
  b();
  (await c)();
  (await d)();
  const e = await s.acquire();
  const f = await s.acquire();
  e();
  f();
});

test('turnstile: position i passes once 0..i-1 are done, in any order of marking', async () => {
  const ts = new Turnstile(3);
  const passed: number[] = [];
  const w2 = ts.wait(2).then(() => passed.push(2));
  const w1 = ts.wait(1).then(() => passed.push(1));
  await ts.wait(0);
  ts.markDone(1);
  await sleep(5);
  assert.deepEqual(passed, [], '1 done early does not let anyone through before 0');
  ts.markDone(0);
  await Promise.all([w1, w2]);
  assert.deepEqual(passed.sort(), [1, 2]);
  ts.markDone(0);
  ts.markDone(7);
});

test('latch: opens when all distinct members arrived', async () => {
  const l = new Latch(2);
  let open = false;
  void l.opened.then(() => {
    open = true;
  });
  l.arrive('a');
  l.arrive('a');
  await sleep(5);
  assert.equal(open, false);
  l.arrive('b');
  await l.opened;
  assert.equal(open, true);
  await new Latch(0).opened;
});

test('sleep rejects at once when aborted', async () => {
  const ac = new AbortController();
  const p = sleep(60_000, ac.signal);
  ac.abort(new Error('stop'));
  await assert.rejects(p, /stop/);
});
