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

/**
 * How the check sees the store: by default its directory on this machine; a store elsewhere
 * (LVM volumes at the DR guest, test/integration/store-lvm-remote.test.ts) brings its own view.
 */
export interface StoreView {
  /** The store's image names (`<server>_<disk>_<seq>`), in any order. */
  images(): Promise<string[]>;
  /** The first byte at which the image differs from the file `expected`, or -1. */
  firstDifference(image: string, expected: string): Promise<number>;
  /** Where the definition's disk for `image` points. */
  diskPath(image: string): string;
  readDefinition(server: string): Promise<string>;
  writeDefinition(server: string, text: string): Promise<void>;
}

/** A filesystem store in a directory of this machine: `<name>.raw` files. */
export function localStoreView(store: string): StoreView {
  const defPath = (server: string) => join(store, 'definitions', `${server}.xml`);
  return {
    images: async () =>
      (await readdir(store)).filter((f) => f.endsWith('.raw')).map((f) => f.slice(0, -'.raw'.length)),
    firstDifference: (image, expected) => firstDifference(join(store, `${image}.raw`), expected),
    diskPath: (image) => join(store, `${image}.raw`),
    readDefinition: (server) => readFile(defPath(server), 'utf8'),
    writeDefinition: (server, text) => writeFile(defPath(server), text),
  };
}

export interface RoundsOptions {
  h: HavenEnv;
  guest: TestGuest;
  /** Where the store is on this machine (to inspect it), or how to see it elsewhere. */
  store: string | StoreView;
  /** `haven protect` arguments after the server name (target and options). */
  protectArgs: string[];
  copies: number;
  rounds: Round[];
  /** Scratch directory for the models. */
  dir: string;
}

export async function replicationRounds(o: RoundsOptions): Promise<ProtectResult[]> {
  const { guest } = o;
  const view = typeof o.store === 'string' ? localStoreView(o.store) : o.store;
  const server = guest.name;
  const models = new Map<string, DiskModel>();
  for (const d of guest.disks)
    models.set(d.target, await DiskModel.create(join(o.dir, `model-${d.target}.raw`), d.sizeBytes));
  const image = (target: string, seq: number) =>
    `${server}_${guest.disks.find((d) => d.target === target)!.storeName}_${seq}`;
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
    const names = (await view.images()).sort();
    assert.deepEqual(names, want.sort(), `images after run ${round}`);

    // Every generation equals the model at its run's point in time.
    for (let seq = 1; seq <= gens; seq++) {
      for (const [disk, path] of expected[round - seq + 1]!) {
        const diff = await view.firstDifference(image(disk, seq), path);
        assert.equal(diff, -1, `run ${round}: generation _${seq} of ${disk} differs at byte ${diff}`);
      }
    }

    if (round === 0) {
      const def = DomainXml.parse(await view.readDefinition(server));
      assert.equal(def.name, server);
      const disks = def.disks();
      assert.deepEqual(
        disks.filter((d) => d.device === 'disk').map((d) => [d.target, d.path, d.format]),
        guest.disks.map((d) => [d.target, view.diskPath(image(d.target, 1)), 'raw']),
      );
      for (const cd of disks.filter((d) => d.device === 'cdrom')) {
        assert.equal(cd.path, undefined, `the cdrom ${cd.target} is ejected`);
      }
      // The operator edits the definition (less RAM at the DR site).
      const text = (await view.readDefinition(server)).replace(
        /<memory unit=['"]\w+['"]>\d+<\/memory>/,
        "<memory unit='MiB'>128</memory>",
      );
      assert.match(text, /<memory unit='MiB'>128<\/memory>/);
      await view.writeDefinition(server, `${text}<!-- edited by the operator -->\n`);
      edited = await view.readDefinition(server);
    } else {
      assert.equal(await view.readDefinition(server), edited, 'the edited definition is kept');
    }
  }
  return results;
}
