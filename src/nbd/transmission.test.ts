/**
 * The transmission state machine's lifecycle: cookies, open → closing → closed, ESHUTDOWN,
 * and breaking.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE, NBD_ESHUTDOWN } from './constants.ts';
import { NbdError } from './errors.ts';
import { encodeDataChunk, encodeErrorChunk, encodeSimpleReply } from './reply-encoder.ts';
import { decodeRequest } from './request-codec.ts';
import { Transmission } from './transmission.ts';

const make = () => new Transmission({ structured: true, contexts: new Map(), exportSize: 1 << 20 });
const flush = { command: NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 };

describe('transmission state machine', () => {
  it('issues distinct cookies and headers that name them', () => {
    const tx = make();
    const cookies = new Set<number>();
    for (let i = 0; i < 100; i++) {
      const s = tx.submit({ command: NBD_CMD_WRITE, flags: 0, offset: i * 512, length: 512 });
      const h = decodeRequest(s.header);
      assert.equal(h.cookie, s.cookie);
      assert.equal(h.offset, i * 512);
      cookies.add(s.cookie);
    }
    assert.equal(cookies.size, 100);
    assert.equal(tx.pendingCount, 100);
  });

  it('matches out-of-order replies to their requests', async () => {
    const tx = make();
    const t1 = Buffer.alloc(4);
    const t2 = Buffer.alloc(4);
    const r1 = tx.submit({ command: NBD_CMD_READ, flags: 0, offset: 0, length: 4, target: t1 });
    const r2 = tx.submit({ command: NBD_CMD_READ, flags: 0, offset: 100, length: 4, target: t2 });
    tx.feed(encodeDataChunk(r2.cookie, 100, Buffer.from('bbbb'), true));
    tx.feed(encodeDataChunk(r1.cookie, 0, Buffer.from('aaaa'), true));
    await Promise.all([r1.promise, r2.promise]);
    assert.equal(t1.toString(), 'aaaa');
    assert.equal(t2.toString(), 'bbbb');
  });

  it('closing waits for pending requests, then asks for DISC exactly once', async () => {
    const tx = make();
    let idle = 0;
    tx.onIdle = () => idle++;
    const s = tx.submit(flush);
    tx.beginClose();
    assert.equal(tx.state, 'closing');
    assert.equal(idle, 0);
    assert.throws(
      () => tx.submit(flush),
      (e: NbdError) => e.code === 'NBD_CLOSED',
    );
    tx.feed(encodeSimpleReply(s.cookie, 0));
    await s.promise;
    assert.equal(idle, 1);
    const disc = decodeRequest(tx.disconnectRequest());
    assert.deepEqual(disc, { flags: 0, command: NBD_CMD_DISC, cookie: 0, offset: 0, length: 0 });
    assert.equal(tx.state, 'closed');
    tx.end(); // the server closes after DISC: nothing is lost
    assert.equal(tx.state, 'closed');
  });

  it('ESHUTDOWN fails that request as unusable and moves to closing (proto.md: the client MUST disconnect)', async () => {
    const tx = make();
    let idle = 0;
    tx.onIdle = () => idle++;
    const a = tx.submit(flush);
    const b = tx.submit(flush);
    tx.feed(encodeErrorChunk(a.cookie, NBD_ESHUTDOWN, 'bye'));
    const e = (await a.promise.catch((x) => x)) as NbdError;
    assert.equal(e.code, 'NBD_ESHUTDOWN');
    assert.equal(e.connectionUsable, false);
    assert.equal(tx.state, 'closing');
    assert.equal(idle, 0, 'the other request is still pending');
    tx.feed(encodeSimpleReply(b.cookie, 0));
    await b.promise;
    assert.equal(idle, 1);
  });

  it('fail() rejects everything pending once, and later failures change nothing', async () => {
    const tx = make();
    const ps = [tx.submit(flush), tx.submit(flush)].map((s) => s.promise.catch((e) => e));
    const first = new NbdError('NBD_CONNECTION_LOST', 'a', { kind: 'io', connectionUsable: false });
    tx.fail(first);
    tx.fail(new NbdError('NBD_TRUNCATED', 'b', { kind: 'io', connectionUsable: false }));
    for (const e of await Promise.all(ps)) assert.equal(e, first);
    assert.equal(tx.brokenBy, first);
    assert.equal(tx.pendingCount, 0);
  });
});
