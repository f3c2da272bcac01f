/**
 * A host file that does not fit: the store of a target on a small loop-mounted ext4 filesystem
 * fills while a backup archive streams in. The write fails with a stable code of kind
 * `resource` (exit 9), the partial file is gone, and the generations stored before are intact
 * and still verify; once space is freed the next archive is stored.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { EXIT_CODES } from '../../src/cli/exit-codes.ts';
import { digest } from '../../src/core/digest.ts';
import { asHavenError } from '../../src/core/errors.ts';
import { createFsStore } from '../../src/store/fs/fs-store.ts';
import { type HostFileMeta, HostStore, verifyHosts } from '../../src/store/host/index.ts';
import { hostFacts } from '../../src/store/host/test-support/facts.ts';
import { fill, loopFs } from '../helpers/loop-fs.ts';

const MiB = 1024 * 1024;

const facts = hostFacts();
const at = '2026-12-01T00:00:00.000Z';

/**
 * Streams `size` random bytes in 1 MiB pieces, as the receiver writes a FILE_DATA stream, and
 * discards the file on a failure as the receiver's host-file session does (protocol/host-files.ts).
 */
async function put(store: HostStore, meta: HostFileMeta, size: number) {
  const w = await store.beginFile(meta);
  const pieces: Buffer[] = [];
  try {
    for (let off = 0; off < size; off += MiB) {
      const piece = randomBytes(Math.min(MiB, size - off));
      pieces.push(piece);
      await w.write(off, piece);
    }
    return await w.finish({ size, digest: digest('blake3', Buffer.concat(pieces)).toString('hex') });
  } catch (e) {
    await w.discard();
    throw e;
  }
}

test('a full target: the archive is refused with a resource error, stored generations intact', async (t) => {
  const mnt = await loopFs(t, 48, 'haven-t-hostfull-');
  const fs = await createFsStore(join(mnt, 'store'));
  await fs.close();
  const store = new HostStore(fs.location, fs.descriptor, { busyWaitMs: 2000 });
  const rescue = await put(store, { host: 'node1', kind: 'rescue', copies: 2, takenAt: at, facts }, 8 * MiB);
  const backup = (rescueId: string): HostFileMeta => ({
    host: 'node1',
    kind: 'backup',
    copies: 2,
    takenAt: at,
    rescueId,
    excludes: [],
  });
  const first = await put(store, backup(rescue.id), 10 * MiB);
  // Leave about 6 MiB: the next 20 MiB archive cannot fit.
  const filler = fill(mnt, 'filler', 6 * MiB);

  let err: unknown;
  try {
    await put(store, backup(rescue.id), 20 * MiB);
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'the archive that does not fit is refused');
  const h = asHavenError(err);
  assert.equal(h.kind, 'resource', `${h.code}: ${h.message}`);
  assert.equal(EXIT_CODES[h.kind], 9);
  assert.ok(h.hint, 'says what to do');
  const files = (await readdir(join(fs.location, 'hosts'))).sort();
  assert.ok(!files.some((f) => f.includes('incomplete')), `no partial file left: ${files.join(' ')}`);
  const m = await store.manifest('node1');
  assert.deepEqual(
    m?.backup.map((b) => b.id),
    [first.id],
    'the stored archive is still _1',
  );
  const report = await verifyHosts(store);
  assert.equal(report.ok, true, JSON.stringify(report.problems));

  await unlink(filler);
  const next = await put(store, backup(rescue.id), 20 * MiB);
  assert.equal(next.seq, 1);
  assert.equal((await store.manifest('node1'))?.backup[1]?.id, first.id);
});
