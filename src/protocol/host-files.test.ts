/**
 * Host files over the stream (docs/stream-protocol.md §4.7): a sender and a receiver on a real
 * socket, into a real filesystem store in a temporary directory.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { digest } from '../core/digest.ts';
import type { HavenError } from '../core/errors.ts';
import { scratchDirs } from '../core/test-support/scratch.ts';
import type { HostFacts, HostFileMeta } from '../store/host/types.ts';
import { createFsStore, type FsStore } from '../store/index.ts';
import { encodeFileDataHead } from './codec.ts';
import { FEATURE_HOST_FILES } from './frames.ts';
import { StreamReceiver } from './receiver.ts';
import { StreamSender } from './sender.ts';
import { RawPeer, socketPair } from './test-support/raw-peer.ts';

const scratch = scratchDirs('haven-host-files-');

async function newStore(): Promise<FsStore> {
  const dir = scratch();
  return createFsStore(join(dir, 'store'));
}

async function connect(store: FsStore, readOnly = false) {
  const [a, b] = await socketPair();
  const receiver = new StreamReceiver(b, store, { readOnly });
  const done = receiver.run();
  done.catch(() => {});
  return { a, done };
}

const layout = 'disk /dev/vda 4294967296 msdos\n';
const facts: HostFacts = {
  hostname: 'node1',
  os: 'Debian GNU/Linux 12 (bookworm)',
  kernel: '6.1.0',
  rearVersion: 'Relax-and-Recover 2.7',
  firmware: 'bios',
  memoryBytes: 1 << 30,
  disks: [{ name: 'vda', size: 4294967296 }],
  layout,
  layoutDigest: digest('blake3', Buffer.from(layout)).toString('hex'),
  rearConfig: 'OUTPUT=ISO\n',
};

const rescueMeta: HostFileMeta = {
  host: 'node1',
  kind: 'rescue',
  copies: 2,
  takenAt: new Date().toISOString(),
  facts,
};

describe('host files over the stream', () => {
  it('stores rescue media and a backup archive sent in pieces, and answers HOST_QUERY', async () => {
    const store = await newStore();
    const { a, done } = await connect(store);
    const sender = await StreamSender.connect(a);
    assert.equal(sender.supports(FEATURE_HOST_FILES), true);
    assert.equal(await sender.hostQuery('node1'), null);
    const iso = randomBytes(9 * 1024 * 1024 + 17);
    await sender.openFile(rescueMeta);
    // Pieces larger and smaller than a frame: the sender splits, the receiver appends in order.
    await sender.sendFileData(iso.subarray(0, 5 * 1024 * 1024));
    await sender.sendFileData(iso.subarray(5 * 1024 * 1024));
    const rescue = await sender.endFile();
    assert.equal(rescue.kind, 'rescue');
    assert.equal(rescue.size, iso.length);
    const archive = randomBytes(100_000);
    await sender.openFile({
      host: 'node1',
      kind: 'backup',
      copies: 2,
      takenAt: new Date().toISOString(),
      rescueId: rescue.id,
      excludes: [],
    });
    await sender.sendFileData(archive);
    const backup = await sender.endFile();
    assert.equal(backup.kind === 'backup' && backup.rescueId, rescue.id);
    const m = await sender.hostQuery('node1');
    assert.deepEqual([m?.rescue.map((g) => g.id), m?.backup.map((g) => g.id)], [[rescue.id], [backup.id]]);
    await sender.close();
    await done;
    assert.ok((await readFile(join(store.location, 'hosts', 'node1_rescue_1.iso'))).equals(iso));
    assert.ok((await readFile(join(store.location, 'hosts', 'node1_backup_1.tar.gz'))).equals(archive));
    await store.close();
  });

  it('refuses a file whose digest differs and goes on with the session; nothing is stored', async () => {
    const store = await newStore();
    const { a, done } = await connect(store);
    const peer = new RawPeer(a);
    const welcome = await peer.handshake();
    // A peer that did not ask for host files is not offered them, but may still use them.
    assert.equal(welcome.features, undefined);
    peer.sendFrame({ type: 'FILE_OPEN', body: rescueMeta });
    await peer.expect('FILE_OPENED');
    const data = randomBytes(1000);
    peer.send(encodeFileDataHead(0, data.length), data);
    peer.sendFrame({ type: 'FILE_END', body: { size: 1000, digest: 'ab'.repeat(32) } });
    const err = await peer.expect('ERROR');
    assert.equal(err.code, 'STORE_HOST_DIGEST_MISMATCH');
    assert.equal(err.fatal, false);
    peer.sendFrame({ type: 'HOST_QUERY', body: { host: 'node1' } });
    assert.equal((await peer.expect('HOST_REPLY')).manifest, null);
    peer.sendFrame({ type: 'BYE', body: null });
    await peer.expect('BYE');
    await done;
    assert.deepEqual(await readdir(join(store.location, 'hosts')), []);
    await store.close();
  });

  it('ends the session on data out of order, and throws away a file cut off by a lost connection', async () => {
    const store = await newStore();
    const first = await connect(store);
    const peer = new RawPeer(first.a);
    await peer.handshake();
    peer.sendFrame({ type: 'FILE_OPEN', body: rescueMeta });
    await peer.expect('FILE_OPENED');
    peer.send(encodeFileDataHead(10, 5), randomBytes(5));
    const err = await peer.expect('ERROR');
    assert.equal(err.code, 'STORE_HOST_BAD_OFFSET');
    assert.equal(err.fatal, true);
    await assert.rejects(first.done, (e: HavenError) => e.code === 'STORE_HOST_BAD_OFFSET');

    const second = await connect(store);
    const sender = await StreamSender.connect(second.a);
    await sender.openFile(rescueMeta);
    await sender.sendFileData(randomBytes(300_000));
    second.a.destroy();
    await assert.rejects(second.done, (e: HavenError) => e.code === 'PROTO_CONNECTION_LOST');
    assert.equal(existsSync(join(store.location, 'hosts', 'node1_rescue_incomplete.iso')), false);
    assert.equal(existsSync(join(store.location, '.haven', 'hosts', 'node1', 'manifest.json')), false);
    await store.close();
  });

  it('a dry-run receiver answers HOST_QUERY and refuses FILE_OPEN', async () => {
    const store = await newStore();
    const { a, done } = await connect(store, true);
    const sender = await StreamSender.connect(a);
    assert.equal(await sender.hostQuery('node1'), null);
    await assert.rejects(sender.openFile(rescueMeta), (e: HavenError) => e.code === 'RECEIVE_READ_ONLY');
    await sender.close();
    await done;
    await store.close();
  });
});
