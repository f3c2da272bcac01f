import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../core/log.ts';
import type { StreamSender } from '../../protocol/index.ts';
import { Lane, type LaneState, reconnectState } from './lane.ts';

test('a connection attempt shows connecting only the first time; a lost or refused lane keeps its state', () => {
  assert.equal(reconnectState('connecting'), 'connecting');
  assert.equal(reconnectState('disconnected'), 'disconnected');
  assert.equal(reconnectState('refused'), 'refused');
});

test('a lane whose target is unreachable stays disconnected while it tries again', async () => {
  const states: LaneState[] = [];
  let attempts = 0;
  let hang: (() => void) | undefined;
  const lane = new Lane({
    server: 'web',
    disks: [{ name: 'vda', size: 1 << 20 }],
    record: null,
    stallMs: 20_000,
    pieceBytes: 1 << 20,
    overwrite: false,
    log: silentLogger,
    onChange: (l) => states.push(l.state),
    target: {
      name: 'dr',
      storePath: '/srv/dr',
      bandwidth: 0,
      // The first attempt fails at once; the second hangs as over a dead link, until released.
      connect: () => {
        attempts++;
        if (attempts === 1) return Promise.reject(new Error('connect ETIMEDOUT'));
        return new Promise<StreamSender>((_, reject) => {
          hang = () => reject(new Error('no TLS connection within 30000 ms'));
        });
      },
    },
  });
  assert.equal(await lane.connect(null), null);
  assert.equal(lane.state, 'disconnected');
  const second = lane.connect(null);
  await new Promise((r) => setImmediate(r));
  assert.equal(lane.state, 'disconnected', 'not connecting while the link is down');
  hang?.();
  assert.equal(await second, null);
  assert.deepEqual(states, ['disconnected']);
});
