/**
 * Issue 3, first must-show: a live guest with two disks and a cdrom, copies 3, a full run and
 * three incremental runs through the real `haven protect` (a `haven receive --stdio` child).
 * After every run: image names and rotation exactly as DESIGN §4.1, every generation equal byte
 * for byte to an independent model of the guest's disks at that run's point in time, incremental
 * runs sending exactly the blocks the guest changed; the definition written once, cdrom ejected,
 * and an operator's edit kept.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DomainXml } from '../../src/core/domain-xml.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { PATTERN_BLOCK_SIZE } from '../fixtures/guest/pattern.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenEnv, havenJson } from '../helpers/haven.ts';

const PREFIX = 'haven-t-rep';
const MiB = 1024 * 1024;

test('full then three incremental runs: names, rotation, content, definition', async (t) => {
  const dir = await testDir(t, `${PREFIX}-local`);
  const h = await havenEnv(dir);
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }],
    cdrom: 'iso',
  });
  const [vda, vdb] = guest.disks;
  const server = guest.name;
  const models = {
    vda: await DiskModel.create(join(dir, 'model-vda.raw'), vda!.sizeBytes),
    vdb: await DiskModel.create(join(dir, 'model-vdb.raw'), vdb!.sizeBytes),
  };
  const image = (disk: 'vda' | 'vdb', seq: number | 'incomplete') =>
    `${server}_${(disk === 'vda' ? vda : vdb)!.storeName}_${seq}.raw`;

  // Expected content of the generation made by each run: snapshots of the model.
  const expected: Array<Record<'vda' | 'vdb', string>> = [];
  const rounds: Array<Array<['vda' | 'vdb', number, number]>> = [
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
  ];

  let definitionAfterEdit = '';
  for (const [round, writes] of rounds.entries()) {
    const changed = { vda: new Set<number>(), vdb: new Set<number>() };
    for (const [disk, seed, count] of writes) {
      await guest.writePattern(disk, seed, count);
      for (const b of await models[disk].writePattern(seed, count)) changed[disk].add(b);
    }
    expected.push({
      vda: await models.vda.snapshot(join(dir, `expect-${round}-vda.raw`)),
      vdb: await models.vdb.snapshot(join(dir, `expect-${round}-vdb.raw`)),
    });

    const r = await havenJson<ProtectResult>(h, ['protect', server, '--to', store, '--copies', '3']);
    assert.equal(r.generation.seq, 1);
    const byDisk = Object.fromEntries(r.disks.map((d) => [d.target, d]));
    if (round === 0) {
      assert.equal(r.mode, 'full');
    } else {
      assert.equal(r.mode, 'incremental', `run ${round} is incremental`);
      for (const disk of ['vda', 'vdb'] as const) {
        assert.equal(
          byDisk[disk]!.dataBytes,
          changed[disk].size * PATTERN_BLOCK_SIZE,
          `run ${round}: ${disk} sends exactly the blocks the guest changed`,
        );
      }
    }

    // Names exactly as DESIGN §4.1: _1 newest … _N oldest, all disks together, nothing else.
    const gens = Math.min(round + 1, 3);
    const want = [];
    for (let seq = 1; seq <= gens; seq++) want.push(image('vda', seq), image('vdb', seq));
    const names = (await readdir(store)).filter((f) => f.endsWith('.raw')).sort();
    assert.deepEqual(names, want.sort(), `images after run ${round}`);

    // Every generation equals the model at its run's point in time.
    for (let seq = 1; seq <= gens; seq++) {
      const exp = expected[round - seq + 1]!;
      for (const disk of ['vda', 'vdb'] as const) {
        const diff = await firstDifference(join(store, image(disk, seq)), exp[disk]);
        assert.equal(diff, -1, `run ${round}: generation _${seq} of ${disk} differs at byte ${diff}`);
      }
    }

    const defPath = join(store, 'definitions', `${server}.xml`);
    if (round === 0) {
      const def = DomainXml.parse(await readFile(defPath, 'utf8'));
      assert.equal(def.name, server);
      const disks = def.disks();
      assert.deepEqual(
        disks.filter((d) => d.device === 'disk').map((d) => [d.target, d.path, d.format]),
        [
          ['vda', join(store, image('vda', 1)), 'raw'],
          ['vdb', join(store, image('vdb', 1)), 'raw'],
        ],
      );
      const cdrom = disks.find((d) => d.device === 'cdrom');
      assert.ok(cdrom, 'the cdrom is still defined');
      assert.equal(cdrom.path, undefined, 'the cdrom is ejected');
      // The operator edits the definition (less RAM at the DR site).
      definitionAfterEdit = (await readFile(defPath, 'utf8')).replace(
        /<memory unit=['"]\w+['"]>\d+<\/memory>/,
        "<memory unit='MiB'>128</memory>",
      );
      assert.match(definitionAfterEdit, /<memory unit='MiB'>128<\/memory>/);
      await writeFile(defPath, `${definitionAfterEdit}<!-- edited by the operator -->\n`);
      definitionAfterEdit = await readFile(defPath, 'utf8');
    } else {
      assert.equal(await readFile(defPath, 'utf8'), definitionAfterEdit, 'the edited definition is kept');
    }
  }

  const verify = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    server,
    '--store',
    store,
  ]);
  assert.equal(verify.ok, true);
  assert.equal(verify.checkedGenerations, 3);
  assert.ok(MiB > 0);
});
