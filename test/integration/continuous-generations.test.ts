/**
 * Issue 15, generations cut from the journal on the job's schedule: `haven serve` runs a
 * `mode: continuous` job with `copies: 2` and `schedule: "* * * * *"` while the sequence-numbered
 * writer (seqw) writes to two disks. Each minute the next consistent point becomes the newest
 * generation `_1` (the older one rotates to `_2`, images named `<server>_<disk>_<seq>`). The cut
 * generation is byte-identical to the point it was cut from (restored with `haven restore --at`),
 * holds a prefix of the writes on both disks, verifies, and boots in a drill whose guest finds
 * that prefix on its own disks.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openFsStore } from '../../src/store/index.ts';
import type { VerifyReport } from '../../src/store/types.ts';
import { checkSeqPrefix, fileReader } from '../fixtures/guest/seq.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { drillSeq, listPoints, restoreAt, seqGuest, storedManifest } from './continuous-helpers.ts';
import { freePort, waitFor, writeConfig } from './jobs-helpers.ts';
import { guestDefinitions } from './recovery-helpers.ts';

const PREFIX = 'haven-t-contg';
const DISK_MIB = 16;

test('serve cuts the rotating generations from the journal on the job schedule', async (t) => {
  const dir = await testDir(t, PREFIX);
  const guest = await seqGuest(t, PREFIX, DISK_MIB);
  const server = guest.name;
  const store = join(dir, 'dr1');
  const port = await freePort();
  const config = await writeConfig(
    dir,
    `targets:\n  dr1:\n    url: ${store}\n` +
      `jobs:\n  cont:\n    servers: [${server}]\n    targets: [dr1]\n    mode: continuous\n    interval: 1s\n    journal: 10m\n` +
      `    copies: 2\n    schedule: "* * * * *"\n` +
      `daemon:\n  listen: 127.0.0.1:${port}\n` +
      guestDefinitions(guest),
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const manifest = () => storedManifest(store, server);

  await guest.seqStart({ rate: 256 * 1024, block: 65536, nonce: 9, disks: ['vda', 'vdb'] });
  const done = (async () => {
    // Two scheduled times: two generations, the first rotated to _2.
    await waitFor(
      'two generations cut',
      async () => ((await manifest())?.generations.length === 2 ? true : undefined),
      200_000,
      1000,
    );
    await guest.seqStop();
  })();
  const r = await runHaven(h, ['serve'], { killOn: done, killSignal: 'SIGTERM', timeoutMs: 400_000 });
  await done;
  assert.ok(r.code === 0 || r.code === 130, `serve stopped: ${r.code}\n${r.stderr}`);

  const m = await manifest();
  assert.ok(m);
  assert.equal(m.copies, 2);
  assert.deepEqual(
    m.generations.map((g) => [g.seq, g.job]),
    [
      [1, 'cont'],
      [2, 'cont'],
    ],
  );
  assert.ok(Date.parse(m.generations[0]!.takenAt) - Date.parse(m.generations[1]!.takenAt) >= 30_000);
  for (const g of m.generations) {
    assert.deepEqual(
      g.disks.map((d) => d.image),
      g.disks.map((d) => `${server}_${d.name}_${g.seq}`),
    );
  }

  // Each generation is byte-identical to the journal point it was cut from.
  const points = await listPoints(h, server, store);
  const size = DISK_MIB * 1024 * 1024;
  const prefixes: number[] = [];
  const s = await openFsStore(store);
  try {
    for (const g of m.generations) {
      const point = points.find((p) => p.pointInTime === g.pointInTime);
      assert.ok(point, `generation _${g.seq} was cut from a point in the journal (${g.pointInTime})`);
      assert.equal(point.takenAt, g.takenAt);
      const restored = await restoreAt(h, server, store, point.id, join(dir, `p${g.seq}`));
      const images: string[] = [];
      for (const [i, d] of g.disks.entries()) {
        const image = await s.imagePath(server, g.id, d.name);
        images.push(image);
        assert.ok(
          (await readFile(image)).equals(await readFile(restored.disks[i]!.path)),
          `_${g.seq} ${d.name} equals point ${point.id}`,
        );
      }
      const verdict = await checkSeqPrefix(fileReader(images), [size, size]);
      assert.equal(verdict.ok, true, verdict.ok ? '' : verdict.problem);
      prefixes.push(verdict.last);
    }
  } finally {
    await s.close();
  }
  assert.ok(prefixes[0]! > prefixes[1]!, `_1 holds more writes than _2 (${prefixes})`);

  // Every generation and every point verifies.
  const v = await havenJson<VerifyReport>(h, ['verify', '--store', store]);
  assert.equal(v.ok, true, JSON.stringify(v.problems));
  assert.equal(v.checkedGenerations, 2);
  assert.ok(v.checkedPoints >= 2);

  // The newest generation boots, and its guest finds the same prefix on its own disks.
  const drilled = await drillSeq(h, server, store, ['--generation', '1'], prefixes[0]!);
  assert.equal(drilled.id, m.generations[0]!.id);
});
