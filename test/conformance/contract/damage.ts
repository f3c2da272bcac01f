/**
 * The store contract: one damaged file does not block too much (issue 13.7). A damaged manifest is
 * read from its copy, one server's unreadable manifest is reported for that server while `verify`
 * of the whole store checks the others, and a deleted image of the newest generation is refused
 * with a hint whose way forward works. Needs a store of files (the crash-injection capability).
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HavenError } from '../../../src/core/errors.ts';
import { type Fresh, ServerSim, SMALL_WEB01_DISKS, type StoreUnderTest } from '../harness.ts';
import { sendExtents } from '../model.ts';

/** The store's directory: the location a child process opens it from (StoreCapabilities). */
function locationOf(sut: StoreUnderTest): string {
  assert.ok(sut.child, 'the damage contract needs a store of files');
  return sut.child.location;
}

/** The metadata directory of a server (docs/store-format.md, "Layout"). */
function serverDir(sut: StoreUnderTest, server: string): string {
  return join(locationOf(sut), '.haven', 'servers', server);
}

export function damageContract(fresh: Fresh): void {
  test('a truncated manifest.json is read from its copy, and the next commit rewrites it', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'Man01', disks: SMALL_WEB01_DISKS, copies: 2, seed: 131 });
    await sim.runDelta();
    await sim.runDelta({ writes: 6, zeroRanges: 1 });
    const manifest = join(serverDir(sut, 'Man01'), 'manifest.json');
    const whole = await readFile(manifest, 'utf8');
    await truncate(manifest, Math.floor(whole.length / 2));
    await sim.check('every generation readable through the copy');
    assert.equal((await sut.store.verify('Man01')).ok, true);
    await sim.runDelta({ writes: 4, zeroRanges: 1 });
    await sim.check('the run after');
    JSON.parse(await readFile(manifest, 'utf8'));
  });

  test('verify of the whole store reports an unreadable manifest for its server and checks the others', async (t) => {
    const sut = await fresh(t);
    const good = ServerSim.on(sut, { server: 'Good01', disks: SMALL_WEB01_DISKS, copies: 1, seed: 132 });
    const bad = ServerSim.on(sut, { server: 'Bad01', disks: SMALL_WEB01_DISKS, copies: 1, seed: 133 });
    await good.runDelta();
    await bad.runDelta();
    for (const f of ['manifest.json', 'manifest.copy.json'])
      await writeFile(join(serverDir(sut, 'Bad01'), f), '{"server": "Bad01", "generations": 7');
    await sut.damageImage('Good01', good.gens[0]!.id, SMALL_WEB01_DISKS[0]!.name, 100);
    const report = await sut.store.verify();
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.problems.map((p) => [p.server, p.code]).sort(),
      [
        ['Bad01', 'STORE_FILE_INVALID'],
        ['Good01', 'STORE_DIGEST_MISMATCH'],
      ],
      JSON.stringify(report.problems),
    );
    const hint = report.problems.find((p) => p.server === 'Bad01')?.hint ?? '';
    assert.match(hint, /haven protect Bad01/);
  });

  // The cases where no other generation can stand in for the newest: copies 1, and a new slot
  // copied from the newest because fewer than `copies` generations exist.
  for (const [copies, runs] of [
    [1, 1],
    [3, 2],
  ] as const) {
    test(`copies ${copies} after ${runs} run(s): a deleted image of _1 is refused, and the hint's way forward works`, async (t) => {
      const sut = await fresh(t);
      const server = 'Del01';
      const sim = ServerSim.on(sut, { server, disks: SMALL_WEB01_DISKS, copies, seed: 134 + copies });
      for (let i = 0; i < runs; i++) await sim.runDelta({ writes: 5, zeroRanges: 1 });
      if (sut.removeImage) await sut.removeImage(server, sim.gens[0]!.id, SMALL_WEB01_DISKS[1]!.name);
      else await unlink(await sut.store.imagePath(server, sim.gens[0]!.id, SMALL_WEB01_DISKS[1]!.name));
      const p = sim.prepare({ writes: 5, zeroRanges: 1 });
      const w = await sut.store.openDelta(p.meta);
      await w.seal((await sendExtents(w, sim.alg, p.content, p.disks, p.extents)).sent);
      await assert.rejects(w.commit(), (e: unknown) => {
        assert.ok(e instanceof HavenError && e.code === 'STORE_IMAGE_MISSING', String(e));
        assert.match(e.hint ?? '', /remove \.haven\/servers\/Del01 and the images named Del01_\*_<n>/);
        assert.match(e.hint ?? '', /`haven protect Del01` sends a full copy/);
        return true;
      });
      await w.close();
      // The sealed delta stays; recovery refuses it the same way and changes nothing.
      await assert.rejects(
        sut.store.recover(),
        (e: unknown) => e instanceof HavenError && e.code === 'STORE_IMAGE_MISSING',
      );
      // The hint's way forward, done as an operator would.
      await rm(serverDir(sut, server), { recursive: true });
      if (sut.removeServerImages) await sut.removeServerImages(server);
      else
        for (const f of await readdir(locationOf(sut)))
          if (f.startsWith(`${server}_`)) await rm(join(locationOf(sut), f));
      assert.equal(await sut.store.manifest(server), null);
      sim.gens = [];
      await sim.runDelta();
      await sim.runDelta({ writes: 5, zeroRanges: 1 });
      await sim.check('started again');
      assert.equal((await sut.store.verify(server)).ok, true);
    });
  }
}
