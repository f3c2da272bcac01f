import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DR_ACTIVE_NS } from './definition.ts';
import { guardElement, hookScript, parseGuardElement } from './guard.ts';

test('the guard element round-trips, escaped', () => {
  const info = {
    since: '2026-01-02T03:04:05Z',
    storeId: 'a"b<c&d',
    drDomain: 'web01-dr',
    setBy: 'activate (root@dr)',
  };
  const el = guardElement(info);
  assert.match(el, /^<dr-active since="2026-01-02T03:04:05Z" storeId="a&quot;b&lt;c&amp;d" /);
  assert.deepEqual(parseGuardElement(el), info);
  assert.equal(parseGuardElement('<something-else/>'), null);
});

test('the hook refuses only the prepare phase of a guarded domain, and says why', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-hook-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const hook = join(dir, 'haven-guard');
  await writeFile(hook, hookScript(), { mode: 0o755 });
  const guarded = `<domain><name>web01</name><metadata><haven:dr-active xmlns:haven="${DR_ACTIVE_NS}" since="x"/></metadata></domain>`;
  const plain = '<domain><name>web02</name></domain>';
  const run = (args: string[], input: string) => spawnSync(hook, args, { input, encoding: 'utf8' });

  const refused = run(['web01', 'prepare', 'begin', '-'], guarded);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /web01 runs at the DR site; starting this stale copy is refused/);
  assert.equal(run(['web02', 'prepare', 'begin', '-'], plain).status, 0);
  for (const phase of [
    ['start', 'begin'],
    ['started', 'begin'],
    ['stopped', 'end'],
    ['release', 'end'],
  ]) {
    assert.equal(run(['web01', ...phase, '-'], guarded).status, 0, phase.join(' '));
  }
  // A large domain XML is read whole: libvirt never writes into a closed pipe.
  assert.equal(run(['web02', 'stopped', 'end', '-'], `<domain>${' '.repeat(1 << 20)}</domain>`).status, 0);
});
