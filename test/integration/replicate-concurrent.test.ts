/**
 * Issue 13, item 8: two `haven protect` of one server at once. The second finds the server taken
 * and fails cleanly as a conflict (exit 7, ENGINE_SERVER_BUSY naming the run that has it) without
 * touching the first one's backup job or scratch files; the first completes. Scratch files are
 * per backup, and those a crashed backup left are removed by the next run.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ProtectResult } from '../../src/engine/index.ts';
import { activeBackup } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';

const PREFIX = 'haven-t-twice';

test('two protects of one server at once: one copies, the other is a clean conflict', async (t) => {
  const dir = await testDir(t, PREFIX);
  const h = await havenEnv(dir);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  const model = await DiskModel.create(join(dir, 'model.raw'), guest.disks[0]!.sizeBytes);
  await guest.writePattern('vda', 1, 96);
  await model.writePattern(1, 96);
  // Left by a backup whose libvirtd went down: the next run that takes the server removes it.
  const scratch = join(dir, 'run', 'scratch');
  await mkdir(scratch, { recursive: true });
  const stale = `${guest.name}.vda.0badc0de.scratch`;
  await writeFile(join(scratch, stale), 'left behind');

  let last: ProtectResult | undefined;
  for (const round of [1, 2, 3]) {
    // Two stores, so only the primary side can tell the runs apart; slowed so they overlap.
    const stores = [join(dir, `a${round}`), join(dir, `b${round}`)];
    const runs = await Promise.all(
      stores.map((s) =>
        runHaven(h, ['protect', guest.name, '--to', s, '--copies', '1', '--bwlimit', '2MiB/s', '--json']),
      ),
    );
    const ok = runs.filter((r) => r.code === 0);
    const busy = runs.filter((r) => r.code !== 0);
    assert.equal(ok.length, 1, `round ${round}: one run copies: ${runs.map((r) => r.stderr).join('\n')}`);
    assert.equal(busy[0]!.code, 7, `round ${round}: the other is a conflict: ${busy[0]!.stderr}`);
    assert.match(
      busy[0]!.stderr,
      /\[ENGINE_SERVER_BUSY\]: .* is being replicated by another run \(pid \d+, job manual run #\d+, to \/.*, since /,
    );
    const winner = JSON.parse(ok[0]!.stdout) as ProtectResult;
    last = winner;
    const image = join(winner.target, `${guest.name}_${guest.disks[0]!.storeName}_1.raw`);
    assert.equal(await firstDifference(image, model.path), -1, `round ${round}: the copy is complete`);
    assert.equal(await activeBackup(guest.virsh, guest.name), null, `round ${round}: no backup job left`);
    assert.deepEqual(
      await readdir(scratch),
      [],
      `round ${round}: no scratch file left, the stale one removed`,
    );
  }

  // The server is free again: a run after both goes through.
  const again = await havenJson<ProtectResult>(h, ['protect', guest.name, '--to', last!.target]);
  assert.equal(again.mode, 'incremental');
});
