/**
 * The store contract: What the store keeps beside its images: the definition (docs/design.md §4.5), digests that verify checks, and the bookkeeping of recovery/ in the manifest.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { DomainXml } from '../../../src/core/domain-xml.ts';
import { CHUNK_SIZE } from '../../../src/store/types.ts';
import { code, disksFor, type Fresh, ServerSim, WEB01_DISKS } from '../harness.ts';

export function recordsContract(fresh: Fresh): void {
  test('the definition is written once with optical drives ejected, then never touched', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'Web01', disks: WEB01_DISKS, copies: 2, seed: 71 });
    const gen = await sim.runDelta();
    const path = sut.store.definitionPath('Web01');
    const xml = await readFile(path, 'utf8');
    const dom = DomainXml.parse(xml);
    assert.equal(dom.name, 'Web01');
    const disks = dom.disks();
    const cdrom = disks.find((d) => d.device === 'cdrom');
    assert.ok(cdrom, 'the cdrom drive stays, empty');
    assert.equal(cdrom.path, undefined, 'the cdrom is ejected');
    for (const d of WEB01_DISKS) {
      const want = await sut.store.imagePath('Web01', gen.id, d.name);
      const dd = disks.find((x) => x.path === want);
      assert.ok(dd, `disk ${d.name} points at its newest image ${want}`);
      assert.ok(want.endsWith(`Web01_${d.name}_1.raw`) || want.endsWith(`Web01_${d.name}_1`));
      assert.equal(dd.format, 'raw');
      assert.equal(dom.child(dd.element, 'backingStore'), undefined);
    }
    const edited = xml.replace('<memory unit="KiB">262144</memory>', '<memory unit="KiB">131072</memory>');
    assert.notEqual(edited, xml);
    await writeFile(path, edited);
    await sim.runDelta();
    await sim.runDelta();
    assert.equal(await readFile(path, 'utf8'), edited, 'an existing definition is never overwritten');
  });

  test('verify finds a flipped byte and names the chunk', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'Web01', disks: WEB01_DISKS, copies: 3, seed: 91 });
    await sim.runDelta();
    await sim.runDelta();
    const seen: [number, number][] = [];
    const clean = await sut.store.verify('Web01', {
      onProgress: (done, total) => seen.push([done, total]),
    });
    assert.equal(clean.ok, true, JSON.stringify(clean.problems));
    const total = 2 * WEB01_DISKS.reduce((n, d) => n + d.size, 0);
    assert.ok(seen.length > 1);
    assert.ok(
      seen.every(([, t]) => t === total),
      'the total is known from the start',
    );
    assert.deepEqual(seen.at(-1), [total, total]);
    assert.ok(
      seen.every(([d], i) => i === 0 || d >= seen[i - 1]![0]),
      'progress only moves forward',
    );
    await assert.rejects(sut.store.verify('Web01', { signal: AbortSignal.abort() }), code('INTERRUPTED'));
    assert.equal(clean.checkedBytes, 2 * WEB01_DISKS.reduce((n, d) => n + d.size, 0));
    const older = sim.gens[1]!;
    const at = 9 * CHUNK_SIZE + 1234;
    await sut.damageImage('Web01', older.id, 'Web01_1', at);
    const report = await sut.store.verify('Web01');
    assert.equal(report.ok, false);
    assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
    const pr = report.problems[0]!;
    assert.equal(pr.code, 'STORE_DIGEST_MISMATCH');
    assert.equal(pr.generationId, older.id);
    assert.equal(pr.seq, 2);
    assert.equal(pr.disk, 'Web01_1');
    assert.deepEqual(pr.badChunks, [9]);
    assert.equal(
      (await sut.store.verify('Web01', { readImages: false })).ok,
      true,
      'structure alone is fine',
    );
    assert.equal(
      (await sut.store.verify('Web01', { generationId: sim.gens[0]!.id })).ok,
      true,
      'the newest generation is fine',
    );
  });

  test('recovery bookkeeping lives in the manifest and survives commits', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'book', disks: disksFor('book'), copies: 2, seed: 121 });
    const g1 = await sim.runDelta();
    await sut.store.recordTest('book', g1.id, {
      at: new Date().toISOString(),
      kind: 'drill',
      result: 'pass',
      seconds: 4.2,
    });
    await sut.store.setBootPriority('book', 10);
    await sim.runDelta();
    let m = await sut.store.manifest('book');
    assert.equal(m?.bootPriority, 10);
    assert.equal(m?.generations[1]?.tests[0]?.seconds, 4.2);
    assert.deepEqual(m?.generations[0]?.tests, []);
    await assert.rejects(
      sut.store.recordTest('book', 'no-such-generation', m!.generations[1]!.tests[0]!),
      code('STORE_GENERATION_NOT_FOUND'),
    );
    await assert.rejects(sut.store.setBootPriority('nobody', 1), code('STORE_SERVER_NOT_FOUND'));
    await sut.store.setActiveAtDr('book', {
      since: new Date().toISOString(),
      generationId: g1.id,
      force: false,
    });
    await assert.rejects(sut.store.openDelta(sim.meta('z', 'incremental')), code('STORE_ACTIVE_AT_DR'));
    await sut.store.setActiveAtDr('book', null);
    m = await sut.store.manifest('book');
    assert.equal(m?.activeAtDr, undefined);
    await sim.runDelta();
    await sim.check('after clearing the activation');
    await assert.rejects(
      sut.store.imagePath('book', 'missing', 'book_0'),
      code('STORE_GENERATION_NOT_FOUND'),
    );
    await assert.rejects(
      sut.store.imagePath('book', sim.gens[0]!.id, 'nodisk'),
      code('STORE_DISK_NOT_FOUND'),
    );
    await assert.rejects(
      sut.store.readDigests('book', sim.gens[0]!.id, 'book_0', 0, 10_000),
      code('STORE_BAD_RANGE'),
    );
    assert.equal(await sut.store.manifest('nobody'), null);
  });
}
