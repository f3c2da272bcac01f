import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { captureLog } from '../../test/helpers/capture-log.ts';
import { PeerGate, PeerWarnings, peerAddress } from './peer-limits.ts';

describe('PeerGate', () => {
  it('refuses a peer past its share, and anyone past the total, until places come back', () => {
    const gate = new PeerGate({ total: 3, perPeer: 2 }, 'streams');
    assert.equal(gate.admit('a'), null);
    assert.equal(gate.admit('a'), null);
    assert.deepEqual(gate.admit('a'), {
      over: 'peer',
      message: '2 streams from a are open (at most 2 per peer address)',
    });
    assert.equal(gate.admit('b'), null);
    assert.deepEqual(gate.admit('c'), { over: 'total', message: '3 streams are open (at most 3)' });
    assert.equal(gate.open, 3);
    gate.release('a');
    assert.equal(gate.admit('c'), null);
    assert.equal(gate.admit('a')?.over, 'total');
  });

  it('reads limits given as a function at every admission', () => {
    let limits = { total: 1, perPeer: 1 };
    const gate = new PeerGate(() => limits, 'connections');
    assert.equal(gate.admit('a'), null);
    assert.equal(gate.admit('b')?.over, 'total');
    limits = { total: 2, perPeer: 1 };
    assert.equal(gate.admit('b'), null);
  });
});

describe('PeerWarnings', () => {
  it('logs one line per peer and kind per window and counts the rest', () => {
    const log = captureLog();
    const w = new PeerWarnings(log, 50);
    for (let i = 0; i < 5; i++) w.warn('10.0.0.1', 'limit', 'refused 10.0.0.1');
    w.warn('10.0.0.1', 'handshake', 'handshake of 10.0.0.1 failed');
    w.warn('10.0.0.2', 'limit', 'refused 10.0.0.2');
    assert.deepEqual(log.lines, ['refused 10.0.0.1', 'handshake of 10.0.0.1 failed', 'refused 10.0.0.2']);
    const until = Date.now() + 60;
    while (Date.now() < until) {
      // The window passes (a busy wait keeps the test synchronous and exact).
    }
    w.warn('10.0.0.1', 'limit', 'refused 10.0.0.1');
    assert.equal(log.lines.at(-1), 'refused 10.0.0.1 (and 4 more like it since the last report)');
  });

  it('keeps a bounded number of peers', () => {
    const log = captureLog();
    const w = new PeerWarnings(log, 60_000);
    for (let i = 0; i < 3000; i++) w.warn(`p${i}`, 'limit', `refused p${i}`);
    // 1024 peers tracked one by one, the rest share one entry: one line for them all.
    assert.equal(log.lines.length, 1025);
  });
});

describe('peerAddress', () => {
  it('sees an IPv4 peer through an IPv6 socket as the IPv4 address', () => {
    assert.equal(peerAddress('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(peerAddress('2001:db8::1'), '2001:db8::1');
    assert.equal(peerAddress(undefined), 'unknown');
  });
});
