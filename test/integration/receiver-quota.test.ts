/**
 * Quotas (issue 13.2) through the real receiver: `haven receive --stdio --quota … --server-quota
 * …` as a child process (what a sender starts for a configured target with `quota` and
 * `servers: {<server>: {quota}}`), writing into a filesystem store. A delta whose declared disks
 * exceed a quota, or whose data would, is refused with RECEIVE_QUOTA_EXCEEDED: nothing is
 * staged for a refused OPEN, and the committed generations stay as they were and verify.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HavenError } from '../../src/core/errors.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import { openTarget } from '../../src/transport/index.ts';
import { C, content, makeMeta, readImage, scratch, sendDelta } from './protocol-helpers.ts';

const MiB = 1024 * 1024;

async function session(store: string, receiveArgs: string[]) {
  const conn = await openTarget(store, { receiveArgs });
  const sender = await StreamSender.connect(conn.stream, { compression: { algorithm: 'none', level: 0 } });
  return {
    sender,
    close: async () => {
      await sender.close().catch(() => {});
      await conn.close();
    },
  };
}

const isQuota = (e: unknown) => e instanceof HavenError && e.code === 'RECEIVE_QUOTA_EXCEEDED';

/** A first run of `server`: one disk of `size` bytes, its first `data` bytes written. */
async function firstRun(store: string, args: string[], server: string, size: number, data: number) {
  const s = await session(store, args);
  try {
    const disk = `${server}_0`;
    const image = content(11, size);
    image.fill(0, data);
    const meta = makeMeta(server, [{ name: disk, size }]);
    await s.sender.open(meta);
    const g = await sendDelta(s.sender, meta, { [disk]: image }, [
      { disk, kind: 'data', offset: 0, length: data },
    ]);
    assert.ok(g);
    return { generation: g, image, disk };
  } finally {
    await s.close();
  }
}

test('a server declaring more than its quota is refused at OPEN, before anything is staged', async (t) => {
  const dir = await scratch(t, 'quota-declared');
  const store = join(dir, 'store');
  const args = ['--server-quota', 'Big01=1MiB'];
  // Another server is not limited by Big01's quota.
  await firstRun(store, args, 'Free01', 2 * MiB, 4 * C);
  const s = await session(store, args);
  try {
    const meta = makeMeta('Big01', [{ name: 'Big01_0', size: 2 * MiB }]);
    await assert.rejects(s.sender.open(meta), (e: unknown) => {
      assert.ok(isQuota(e), String(e));
      assert.match(
        (e as HavenError).message,
        /Big01 declares 2.00 MiB of disks, more than the quota of server Big01 \(1.00 MiB\)/,
      );
      assert.match((e as HavenError).hint ?? '', /haven receive --quota/);
      return true;
    });
  } finally {
    await s.close();
  }
  const files = await readdir(store);
  assert.deepEqual(
    files.filter((f) => f.startsWith('Big01')),
    [],
    'no image of the refused server',
  );
  assert.deepEqual(
    await readdir(join(store, '.haven', 'servers')).then((x) => x.filter((f) => f === 'Big01')),
    [],
  );
});

test('data beyond the server quota is refused before it is written; the committed generation stays', async (t) => {
  const dir = await scratch(t, 'quota-written');
  const store = join(dir, 'store');
  const args = ['--server-quota', 'Web01=1MiB'];
  const first = await firstRun(store, args, 'Web01', MiB, 8 * C);
  const s = await session(store, args);
  try {
    // The second run rewrites the whole disk: the first generation's 512 KiB plus 1 MiB of new
    // data is more than 1 MiB.
    const image = content(12, MiB);
    const meta = makeMeta('Web01', [{ name: first.disk, size: MiB }], {
      pointInTime: 'p2',
      baseGenerationId: first.generation.id,
      mode: 'incremental',
    });
    await s.sender.open(meta);
    await assert.rejects(
      sendDelta(s.sender, meta, { [first.disk]: image }, [
        { disk: first.disk, kind: 'data', offset: 0, length: MiB },
      ]),
      isQuota,
    );
  } finally {
    await s.close();
  }
  const fs = await openFsStore(store);
  try {
    const m = await fs.manifest('Web01');
    assert.deepEqual(
      m?.generations.map((g) => g.id),
      [first.generation.id],
      'only the first generation',
    );
    assert.ok((await readImage(fs, 'Web01', first.generation.id, first.disk)).equals(first.image));
    assert.deepEqual((await fs.verify('Web01')).problems, []);
  } finally {
    await fs.close();
  }
});

test('the store quota counts every server: a second server is refused once the store is full', async (t) => {
  const dir = await scratch(t, 'quota-store');
  const store = join(dir, 'store');
  const args = ['--quota', '1MiB'];
  await firstRun(store, args, 'One01', MiB, 12 * C);
  const s = await session(store, args);
  try {
    const disk = 'Two01_0';
    const image = content(13, MiB);
    const meta = makeMeta('Two01', [{ name: disk, size: MiB }]);
    await s.sender.open(meta);
    await assert.rejects(
      sendDelta(s.sender, meta, { [disk]: image }, [{ disk, kind: 'data', offset: 0, length: MiB }]),
      (e: unknown) => {
        assert.ok(isQuota(e), String(e));
        return true;
      },
    );
  } finally {
    await s.close();
  }
  const fs = await openFsStore(store);
  try {
    assert.equal(await fs.manifest('Two01'), null, 'the refused server has no generation');
    assert.ok(
      (await fs.spaceUsed()) <= MiB + 4 * C,
      'the store holds no more than its quota (and one extent)',
    );
    assert.deepEqual((await fs.verify()).problems, []);
  } finally {
    await fs.close();
  }
});
