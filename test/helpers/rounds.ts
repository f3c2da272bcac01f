/**
 * The replication check shared by the local, ssh and TLS tests: the guest writes known blocks,
 * `haven protect` runs, and then the store must hold exactly docs/design.md §4.1's names, every
 * generation must equal an independent model of the guest's disks at its run, incremental runs
 * must send exactly the blocks the guest changed, and the definition must be written once with
 * optical drives ejected (an operator's edit survives later runs).
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DomainXml } from '../../src/core/domain-xml.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import type { TestGuest } from '../fixtures/guest/index.ts';
import { PATTERN_BLOCK_SIZE } from '../fixtures/guest/pattern.ts';
import { DiskModel, firstDifference } from './disk-model.ts';
import { type HavenEnv, havenJson } from './haven.ts';

/** Per run, the pattern writes: [disk target, seed, block count]. */
export type Round = Array<[string, number, number]>;

export interface RoundsOptions {
  h: HavenEnv;
  guest: TestGuest;
  /** Where the store is on this machine (to inspect it). */
  store: string;
  /** `haven protect` arguments after the server name (target and options). */
  protectArgs: string[];
  copies: number;
  rounds: Round[];
  /** Scratch directory for the models. */
  dir: string;
}

export async function replicationRounds(o: RoundsOptions): Promise<ProtectResult[]> {
  const { guest, store } = o;
  const server = guest.name;
  const models = new Map<string, DiskModel>();
  for (const d of guest.disks)
    models.set(d.target, await DiskModel.create(join(o.dir, `model-${d.target}.raw`), d.sizeBytes));
  const image = (target: string, seq: number) =>
    `${server}_${guest.disks.find((d) => d.target === target)!.storeName}_${seq}.raw`;
  const expected: Array<Map<string, string>> = [];
  const results: ProtectResult[] = [];
  let edited = '';

  for (const [round, writes] of o.rounds.entries()) {
    const changed = new Map(guest.disks.map((d) => [d.target, new Set<number>()]));
    for (const [disk, seed, count] of writes) {
      await guest.writePattern(disk, seed, count);
      for (const b of await models.get(disk)!.writePattern(seed, count)) changed.get(disk)!.add(b);
    }
    const snap = new Map<string, string>();
    for (const [disk, m] of models)
      snap.set(disk, await m.snapshot(join(o.dir, `expect-${round}-${disk}.raw`)));
    expected.push(snap);

    const r = await havenJson<ProtectResult>(o.h, [
      'protect',
      server,
      ...o.protectArgs,
      '--copies',
      String(o.copies),
    ]);
    results.push(r);
    assert.equal(r.generation.seq, 1);
    if (round === 0) {
      assert.equal(r.mode, 'full');
    } else {
      assert.equal(r.mode, 'incremental', `run ${round} is incremental`);
      for (const d of r.disks) {
        assert.equal(
          d.dataBytes,
          changed.get(d.target)!.size * PATTERN_BLOCK_SIZE,
          `run ${round}: ${d.target} sends exactly the blocks the guest changed`,
        );
      }
    }

    // Names exactly as docs/design.md §4.1: _1 newest … _N oldest, all disks together, nothing else.
    const gens = Math.min(round + 1, o.copies);
    const want: string[] = [];
    for (let seq = 1; seq <= gens; seq++) for (const d of guest.disks) want.push(image(d.target, seq));
    const names = (await readdir(store)).filter((f) => f.endsWith('.raw')).sort();
    assert.deepEqual(names, want.sort(), `images after run ${round}`);

    // Every generation equals the model at its run's point in time.
    for (let seq = 1; seq <= gens; seq++) {
      for (const [disk, path] of expected[round - seq + 1]!) {
        const diff = await firstDifference(join(store, image(disk, seq)), path);
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
        guest.disks.map((d) => [d.target, join(store, image(d.target, 1)), 'raw']),
      );
      for (const cd of disks.filter((d) => d.device === 'cdrom')) {
        assert.equal(cd.path, undefined, `the cdrom ${cd.target} is ejected`);
      }
      // The operator edits the definition (less RAM at the DR site).
      const text = (await readFile(defPath, 'utf8')).replace(
        /<memory unit=['"]\w+['"]>\d+<\/memory>/,
        "<memory unit='MiB'>128</memory>",
      );
      assert.match(text, /<memory unit='MiB'>128<\/memory>/);
      await writeFile(defPath, `${text}<!-- edited by the operator -->\n`);
      edited = await readFile(defPath, 'utf8');
    } else {
      assert.equal(await readFile(defPath, 'utf8'), edited, 'the edited definition is kept');
    }
  }
  return results;
}
