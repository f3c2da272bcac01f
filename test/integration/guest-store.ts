/**
 * A test guest protected into a local store, with a model of its disk: what the replication tests
 * that damage or lose something start from. `protect` runs `haven protect … --json` with the
 * given copies; `checkCopy` asserts `_1` equals the guest's disk and `haven verify` passes.
 * `config`: the text of a configuration file both sides read (the local receiver is a child).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProtectResult } from '../../src/engine/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';

export async function guestStore(
  t: Parameters<typeof testDir>[0],
  o: { prefix: string; name: string; copies: number; config?: string },
) {
  const dir = await testDir(t, `${o.prefix}-${o.name}`);
  const config = join(dir, 'haven.yaml');
  if (o.config !== undefined) await writeFile(config, o.config);
  const h = await havenEnv(dir, o.config !== undefined ? { HAVEN_CONFIG: config } : {});
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, { prefix: o.prefix, disks: [{ sizeMiB: 64 }] });
  const model = await DiskModel.create(join(dir, 'model.raw'), guest.disks[0]!.sizeBytes);
  const image = join(store, `${guest.name}_${guest.disks[0]!.storeName}_1.raw`);
  const protect = (to = store, ...extra: string[]): Promise<ProtectResult> =>
    havenJson<ProtectResult>(h, ['protect', guest.name, '--to', to, '--copies', String(o.copies), ...extra]);
  const write = async (seed: number, count: number) => {
    await guest.writePattern('vda', seed, count);
    return new Set(await model.writePattern(seed, count));
  };
  const verify = () => runHaven(h, ['verify', '--store', store, '--json']);
  const checkCopy = async (when: string) => {
    assert.equal(await firstDifference(image, model.path), -1, `${when}: the copy equals the guest's disk`);
    const v = await verify();
    assert.equal(v.code, 0, `${when}: the store verifies\n${v.stdout}`);
  };
  return { dir, h, store, guest, model, image, protect, write, verify, checkCopy };
}
