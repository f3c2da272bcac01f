/**
 * What a target tells the primary beyond the copy itself (docs/stream-protocol.md §4.1): the
 * store's space in WELCOME, QUERY_REPLY and COMMITTED, and every generation of a server in
 * QUERY_REPLY. Optional fields both ways: a receiver that sends none of them (an older one) still
 * works with this sender, which then knows no capacity and only the newest generation.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeJson } from './codec.ts';
import type { StoreCapacity } from './frames.ts';
import { StreamReceiver } from './receiver.ts';
import { StreamSender } from './sender.ts';
import { MemoryStore } from './test-support/memory-store.ts';
import { RawPeer, socketPair } from './test-support/raw-peer.ts';

const C = 65536;

async function copyOnce(sender: StreamSender, pointInTime: string, base: string | null) {
  await sender.open({
    server: 'web',
    job: 'nightly',
    copies: 3,
    disks: [{ name: 'vda', size: 2 * C }],
    sourceDefinition: '<domain type="qemu"/>',
    pointInTime,
    takenAt: new Date().toISOString(),
    baseGenerationId: base,
    mode: base ? 'incremental' : 'full',
  });
  await sender.sendData('vda', 0, Buffer.alloc(2 * C, pointInTime.length));
  sender.mark('vda', 2 * C);
  await sender.endDelta({ disks: { vda: { dataBytes: 2 * C, zeroBytes: 0 } } });
  return sender.commit();
}

describe('store capacity and restore points over the stream', () => {
  it('the receiver reports the space at WELCOME, each QUERY_REPLY and COMMITTED; QUERY lists every generation', async () => {
    const store = new MemoryStore();
    let free = 1000 * C;
    const [a, b] = await socketPair();
    const done = new StreamReceiver(b, store, {
      capacity: async (): Promise<StoreCapacity> => ({ totalBytes: 2000 * C, freeBytes: free }),
    }).run();
    const sender = await StreamSender.connect(a);
    assert.deepEqual(sender.capacity, { totalBytes: 2000 * C, freeBytes: 1000 * C }, 'from WELCOME');

    const empty = await sender.inspect('web');
    assert.deepEqual(empty.generations, [], 'no restore points yet');
    assert.equal(empty.newest, null);

    free = 998 * C;
    const g1 = await copyOnce(sender, 'p1', null);
    assert.equal(sender.capacity?.freeBytes, 998 * C, 'after COMMITTED');
    free = 996 * C;
    const g2 = await copyOnce(sender, 'p22', g1.id);

    free = 995 * C;
    const view = await sender.inspect('web');
    assert.deepEqual(
      view.generations?.map((g) => [g.id, g.seq]),
      [
        [g2.id, 1],
        [g1.id, 2],
      ],
      'newest first, with their sequence numbers',
    );
    assert.equal(view.newest?.id, g2.id);
    assert.deepEqual(view.capacity, { totalBytes: 2000 * C, freeBytes: 995 * C });
    assert.deepEqual(sender.capacity, view.capacity, 'the last report is kept');
    await sender.close();
    await done;
  });

  it('a store that cannot tell its space sends none, and a failing probe does not break the session', async () => {
    const store = new MemoryStore();
    const [a, b] = await socketPair();
    const done = new StreamReceiver(b, store, {
      capacity: async () => {
        throw new Error('statfs failed');
      },
    }).run();
    const sender = await StreamSender.connect(a);
    assert.equal(sender.capacity, null);
    assert.equal((await sender.inspect('web')).capacity, null);
    await sender.close();
    await done;
  });

  it('a receiver that sends neither field (an older Haven): capacity unknown, only the newest generation', async () => {
    const store = new MemoryStore();
    const [a, b] = await socketPair();
    const peer = new RawPeer(b);
    const connecting = StreamSender.connect(a);
    const hello = await peer.next();
    assert.equal(hello?.type, 'HELLO');
    peer.send(
      encodeJson('WELCOME', {
        version: 1,
        software: 'haven/0.1.0',
        compression: ['none'],
        digest: store.descriptor.digest,
        store: store.descriptor,
        maxExtentBytes: 4 * 1024 * 1024,
        maxDigestsPerRequest: 65536,
      }),
    );
    const sender = await connecting;
    assert.equal(sender.capacity, null);
    const asking = sender.inspect('web');
    assert.equal((await peer.next())?.type, 'QUERY');
    peer.send(encodeJson('QUERY_REPLY', { server: 'web', newest: null }));
    const view = await asking;
    assert.equal(view.generations, null, 'unknown, not empty');
    assert.equal(view.capacity, null);
    a.destroy();
    b.destroy();
  });
});
