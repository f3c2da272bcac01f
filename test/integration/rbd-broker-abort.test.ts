/**
 * librbd 16 aborts the broker's process now and then, from one of its own threads, soon after an
 * image is closed (src/store/rbd/broker.py). A request the broker had then is sent again to a new
 * broker (broker.ts `REPEATABLE`), and a reader is opened again where it was (reader.ts). The
 * broker here aborts through its test hook (HAVEN_RBD_ABORT), before or after doing a request,
 * on the real one-node cluster (test/fixtures/ceph): a create, snapshot, clone or rename the dead
 * broker did counts once, a reader reads what it read before, and a request that cannot be sent
 * again (`deep_copy`) fails with the broker's death and leaves the next request working.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { HavenError } from '../../src/core/errors.ts';
import { exec } from '../../src/core/exec.ts';
import { Broker, brokerDied } from '../../src/store/rbd/broker.ts';
import { parseRbdLocation } from '../../src/store/rbd/location.ts';
import { openBrokerReader } from '../../src/store/rbd/reader.ts';
import { rbdLocation } from '../conformance/rbd-sut.ts';
import { startCephCluster } from '../fixtures/ceph/index.ts';
import { TEST_ROOT } from '../fixtures/guest/index.ts';
import { captureLog } from '../helpers/capture-log.ts';

const ceph = await startCephCluster({ after: (fn) => after(fn) });
const MiB = 1 << 20;

test('a broker that dies mid-request: the request goes to a new broker and counts once', async (t) => {
  const pool = await ceph.createPool(`haven-t-rbdab-${randomBytes(4).toString('hex')}`);
  t.after(() => ceph.ceph(['osd', 'pool', 'rm', pool, pool, '--yes-i-really-really-mean-it']));
  const dir = mkdtempSync(join(TEST_ROOT, 'rbd-abort-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const abortFile = join(dir, 'abort');
  process.env.HAVEN_RBD_ABORT = abortFile;
  t.after(() => {
    delete process.env.HAVEN_RBD_ABORT;
  });
  const log = captureLog();
  const location = parseRbdLocation(rbdLocation(ceph, pool));
  const broker = new Broker({ location, opTimeoutS: 30, mountTimeoutS: 30, log });
  t.after(() => broker.close());
  const deaths = () => log.lines.filter((l) => l.includes('the Ceph broker died')).length;
  /** The next broker to handle `op` aborts, before or after doing it; `call` must still answer. */
  const dyingOn = async <T>(op: string, when: 'before' | 'after', call: () => Promise<T>): Promise<T> => {
    writeFileSync(abortFile, `${op} ${when}`);
    const before = deaths();
    const result = await call();
    assert.equal(existsSync(abortFile), false, `the broker aborted on ${op}`);
    assert.ok(deaths() > before, `the death on ${op} was logged`);
    return result;
  };
  const write = (image: string, byte: number, snap?: string) =>
    exec('qemu-io', ['-f', 'raw', '-c', `write -P ${byte} 0 ${MiB}`, ceph.qemuRbd(pool, image, { snap })]);
  const images = async () => (await ceph.rbd(['ls', pool])).stdout.split('\n').filter(Boolean).sort();

  await t.test('a create, snapshot, clone and rename done by the broker that died count once', async () => {
    await dyingOn('img_create', 'after', () => broker.call('img_create', { name: 'a', size: 8 * MiB }));
    await dyingOn('snap_create', 'after', () => broker.call('snap_create', { name: 'a', snap: 'haven-1' }));
    await dyingOn('clone', 'after', () => broker.call('clone', { parent: 'a', snap: 'haven-1', child: 'b' }));
    const renamed = await dyingOn('img_rename', 'after', () =>
      broker.call('img_rename', { from: 'b', to: 'c' }),
    );
    assert.equal(renamed.renamed, true);
    const info = await dyingOn('img_info', 'before', () => broker.call('img_info', { name: 'c' }));
    assert.deepEqual(info.parent, { pool, image: 'a', snap: 'haven-1' });
    assert.deepEqual(await images(), ['a', 'c']);
    // Only a request sent again is answered as done: a first create of a name taken still fails.
    await assert.rejects(
      broker.call('img_create', { name: 'a', size: 8 * MiB }),
      (e: unknown) => e instanceof HavenError && e.details?.errno === 17,
    );
  });

  await t.test('a reader is opened again where it was, at the head or at a snapshot', async () => {
    await write('a', 0x11);
    const reader = await openBrokerReader(broker, 'a', `rbd:${pool}/a`);
    assert.ok(reader);
    const buf = Buffer.alloc(MiB);
    const holds = (byte: number, why: string) =>
      assert.ok(
        buf.every((b) => b === byte),
        why,
      );
    await dyingOn('reader_read', 'before', () => reader.read(buf, MiB, 0));
    holds(0x11, 'the head, read by a new broker');
    // A rotation snapshots the head and writes the delta into it: the reader stays on the
    // generation it opened, now the snapshot, also in a broker that did not see it move.
    await broker.call('snap_create', { name: 'a', snap: 'haven-2' });
    await write('a', 0x22);
    await reader.read(buf, MiB, 0);
    holds(0x11, 'the generation opened, after the rotation');
    await dyingOn('reader_read', 'before', () => reader.read(buf, MiB, 0));
    holds(0x11, 'the snapshot, read by a new broker');
    // A broker that dies during another request takes the reader with it: the next read finds
    // no such reader (ESTALE) and opens it again.
    await dyingOn('img_list', 'before', () => broker.call('img_list'));
    await reader.read(buf, MiB, 0);
    holds(0x11, 'the snapshot, after the broker died elsewhere');
    await reader.close();
  });

  await t.test('a request that is not sent again fails with the death, and the next works', async () => {
    writeFileSync(abortFile, 'deep_copy before');
    await assert.rejects(broker.call('deep_copy', { from: 'a', to: 'd' }), (e: unknown) => brokerDied(e));
    assert.equal(existsSync(abortFile), false);
    assert.deepEqual((await broker.call('img_list')).names, ['a', 'c']);
  });
});
