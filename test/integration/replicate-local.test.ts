/**
 * Issue 3, first must-show: a live guest with two disks and a cdrom, copies 3, a full run and
 * three incremental runs through the real `haven protect` to a local path (a `haven receive
 * --stdio` child). test/helpers/rounds.ts checks names, rotation, byte-exact content, the bytes
 * sent and the definition after every run.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, havenJson } from '../helpers/haven.ts';
import { replicationRounds } from '../helpers/rounds.ts';

const PREFIX = 'haven-t-rep';

test('full then three incremental runs: names, rotation, content, definition', async (t) => {
  const dir = await testDir(t, `${PREFIX}-local`);
  const h = await havenEnv(dir);
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }],
    cdrom: 'iso',
  });
  await replicationRounds({
    h,
    guest,
    store,
    dir,
    protectArgs: ['--to', store],
    copies: 3,
    rounds: [
      [
        ['vda', 1, 60],
        ['vdb', 2, 20],
      ],
      [['vda', 3, 30]],
      [['vdb', 4, 10]],
      [
        ['vda', 5, 20],
        ['vdb', 6, 5],
      ],
    ],
  });
  const verify = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    guest.name,
    '--store',
    store,
  ]);
  assert.equal(verify.ok, true);
  assert.equal(verify.checkedGenerations, 3);
});
