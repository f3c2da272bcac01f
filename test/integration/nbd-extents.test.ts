/**
 * Block status through a real qemu-nbd, checked against nbdinfo (libnbd) on the same export:
 * base:allocation on raw and qcow2 images, and a qcow2 persistent dirty bitmap exported with -B.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NbdClient } from '../../src/nbd/client.ts';
import { NBD_STATE_DIRTY } from '../../src/nbd/constants.ts';
import type { NbdError } from '../../src/nbd/errors.ts';
import { type MappedExtent, mapExtents } from '../../src/nbd/extents.ts';
import {
  connectOptions,
  IMAGE_SIZE,
  type MapEntry,
  MiB,
  makeImage,
  nbdinfoMap,
  scratch,
  serve,
  sh,
  uriOf,
} from './nbd-helpers.ts';

async function collect(g: AsyncGenerator<MappedExtent>): Promise<MappedExtent[]> {
  const out: MappedExtent[] = [];
  for await (const e of g) out.push(e);
  return out;
}

/** The reference map clipped to [start, end) (what mapExtents must give for a sub-range). */
function clip(map: MapEntry[], start: number, end: number): MapEntry[] {
  return map
    .filter((e) => e.offset + e.length > start && e.offset < end)
    .map((e) => {
      const from = Math.max(e.offset, start);
      return { offset: from, length: Math.min(e.offset + e.length, end) - from, flags: e.flags };
    });
}

for (const format of ['raw', 'qcow2'] as const) {
  describe(`base:allocation on ${format}`, () => {
    it('mapExtents agrees exactly with nbdinfo --map, at any step and on sub-ranges', async (t) => {
      const dir = scratch(t);
      const image = await makeImage(dir, `disk.${format}`, format);
      const server = await serve(t, dir, { image, format, readOnly: true, shared: 4 });
      const reference = await nbdinfoMap(uriOf(server));
      // The image really has several kinds of extent, or this test proves little.
      assert.ok(new Set(reference.map((e) => e.flags)).size >= 2, JSON.stringify(reference));
      assert.ok(reference.length >= 5, JSON.stringify(reference));

      const c = await NbdClient.connect({ ...connectOptions(server), metaContexts: ['base:allocation'] });
      t.after(() => c.close());
      assert.deepEqual(await collect(mapExtents(c, 'base:allocation')), reference);
      for (const step of [64 * 1024, 1000 * 512, 3 * MiB]) {
        assert.deepEqual(
          await collect(mapExtents(c, 'base:allocation', { step })),
          reference,
          `step ${step}`,
        );
      }
      for (const [start, end] of [
        [MiB + 512, 12 * MiB],
        [5 * MiB + 4096, 5 * MiB + 8192],
        [0, IMAGE_SIZE],
        [40 * MiB, IMAGE_SIZE],
      ] as const) {
        assert.deepEqual(
          await collect(
            mapExtents(c, 'base:allocation', { offset: start, length: end - start, step: 2 * MiB }),
          ),
          clip(reference, start, end),
          `range [${start}, ${end})`,
        );
      }
    });
  });
}

describe('qemu:dirty-bitmap', () => {
  it('mapExtents agrees exactly with nbdinfo --map=qemu:dirty-bitmap:b0', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.qcow2', 'qcow2', 'b0');
    // Writes after a second bitmap is added show up only in that one.
    await sh('qemu-img', 'bitmap', '--add', '--enable', image, 'b1');
    await sh('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x99 30M 256k', image);
    const server = await serve(t, dir, {
      image,
      format: 'qcow2',
      readOnly: true,
      bitmaps: ['b0', 'b1'],
      shared: 4,
    });
    const ref0 = await nbdinfoMap(uriOf(server), 'qemu:dirty-bitmap:b0');
    const ref1 = await nbdinfoMap(uriOf(server), 'qemu:dirty-bitmap:b1');
    const dirty1 = ref1.filter((e) => e.flags & NBD_STATE_DIRTY);
    assert.equal(dirty1.length, 1, JSON.stringify(ref1));
    assert.ok(
      dirty1[0]!.offset <= 30 * MiB && dirty1[0]!.offset + dirty1[0]!.length >= 30 * MiB + 256 * 1024,
    );

    const c = await NbdClient.connect({
      ...connectOptions(server),
      metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0', 'qemu:dirty-bitmap:b1'],
    });
    t.after(() => c.close());
    assert.deepEqual([...c.contexts.keys()].sort(), [
      'base:allocation',
      'qemu:dirty-bitmap:b0',
      'qemu:dirty-bitmap:b1',
    ]);
    assert.deepEqual(await collect(mapExtents(c, 'qemu:dirty-bitmap:b0')), ref0);
    assert.deepEqual(await collect(mapExtents(c, 'qemu:dirty-bitmap:b1')), ref1);
    assert.deepEqual(await collect(mapExtents(c, 'qemu:dirty-bitmap:b0', { step: 256 * 1024 })), ref0);
    assert.deepEqual(await collect(mapExtents(c, 'base:allocation')), await nbdinfoMap(uriOf(server)));
    // Every region IMAGE_WRITES touched is dirty in b0.
    const dirty0 = ref0.filter((e) => e.flags & NBD_STATE_DIRTY);
    for (const off of [MiB, 4 * MiB, 10 * MiB, 40 * MiB, 20 * MiB, 63 * MiB]) {
      assert.ok(
        dirty0.some((e) => e.offset <= off && off < e.offset + e.length),
        `offset ${off} dirty in b0`,
      );
    }
  });

  it('blockStatus returns every negotiated context, and REQ_ONE a single extent each', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.qcow2', 'qcow2', 'b0');
    const server = await serve(t, dir, { image, format: 'qcow2', readOnly: true, bitmaps: ['b0'] });
    const c = await NbdClient.connect({
      ...connectOptions(server),
      metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0'],
    });
    t.after(() => c.close());
    const all = await c.blockStatus(0, IMAGE_SIZE);
    assert.deepEqual([...all.keys()].sort(), ['base:allocation', 'qemu:dirty-bitmap:b0']);
    const one = await c.blockStatus(MiB, 16 * MiB, { reqOne: true });
    for (const [name, ext] of one) {
      assert.equal(ext.length, 1, name);
      assert.ok(ext[0]!.length <= 16 * MiB);
    }
    await assert.rejects(
      (async () => {
        for await (const _ of mapExtents(c, 'qemu:dirty-bitmap:nope')) break;
      })(),
      (e: NbdError) => e.code === 'NBD_UNKNOWN_CONTEXT',
    );
  });

  it('BLOCK_STATUS without negotiated contexts is refused before anything is sent', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    const server = await serve(t, dir, { image, format: 'raw', readOnly: true });
    const c = await NbdClient.connect(connectOptions(server));
    t.after(() => c.close());
    await assert.rejects(
      c.blockStatus(0, 4096),
      (e: NbdError) => e.code === 'NBD_UNKNOWN_CONTEXT' && e.connectionUsable,
    );
    assert.equal(c.usable, true);
  });
});
