import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HavenError } from '../core/errors.ts';
import { DIRECTION, FRAME_NAMES, type FrameName } from './frames.ts';
import {
  RECEIVER_STATES,
  type ReceiverState,
  receiverStep,
  SENDER_OPS,
  SENDER_STATES,
  type SenderOp,
  type SenderState,
  senderOnFrame,
  senderOnOp,
} from './state.ts';

// The expected tables are written out again here, independently of state.ts, so that a change to
// either one is a visible decision rather than a silent one.
const RECEIVER_ALLOWED: Record<
  ReceiverState,
  Partial<Record<FrameName, [ReceiverState, ReceiverState | null]>>
> = {
  handshake: { HELLO: ['ready', null], ERROR: ['closed', null] },
  ready: {
    QUERY: ['ready', 'ready'],
    OPEN: ['delta', 'ready'],
    HOST_QUERY: ['ready', 'ready'],
    FILE_OPEN: ['file', 'ready'],
    BYE: ['closed', null],
    ERROR: ['closed', null],
  },
  delta: {
    EXTENT: ['delta', null],
    MARK: ['delta', null],
    DIGESTS_REQ: ['delta', null],
    END_DELTA: ['sealed', 'ready'],
    ABORT: ['ready', 'ready'],
    BYE: ['closed', null],
    ERROR: ['closed', null],
  },
  sealed: {
    COMMIT: ['ready', 'ready'],
    ABORT: ['ready', 'ready'],
    BYE: ['closed', null],
    ERROR: ['closed', null],
  },
  file: {
    FILE_DATA: ['file', null],
    FILE_END: ['ready', 'ready'],
    ABORT: ['ready', 'ready'],
    BYE: ['closed', null],
    ERROR: ['closed', null],
  },
  closed: {},
};

const SENDER_ALLOWED: Record<SenderState, Partial<Record<FrameName, SenderState>>> = {
  handshake: { WELCOME: 'ready' },
  ready: {},
  querying: { QUERY_REPLY: 'ready' },
  opening: { OPENED: 'delta' },
  delta: { DIGESTS: 'delta', STAGED: 'delta' },
  ending: { DIGESTS: 'ending', STAGED: 'ending', DELTA_DURABLE: 'sealed' },
  sealed: {},
  committing: { COMMITTED: 'ready' },
  aborting: { DIGESTS: 'aborting', STAGED: 'aborting', ABORTED: 'ready' },
  closing: { DIGESTS: 'closing', STAGED: 'closing', BYE: 'closed' },
  hostQuerying: { HOST_REPLY: 'ready' },
  fileOpening: { FILE_OPENED: 'file' },
  file: {},
  fileEnding: { FILE_COMMITTED: 'ready' },
  closed: {},
};

const SENDER_OPS_ALLOWED: Record<SenderOp, SenderState[]> = {
  query: ['ready'],
  open: ['ready'],
  expectedDigests: ['delta'],
  sendData: ['delta'],
  sendZero: ['delta'],
  mark: ['delta'],
  endDelta: ['delta'],
  commit: ['sealed'],
  abort: ['delta', 'sealed', 'file'],
  close: ['ready', 'delta', 'sealed', 'file'],
  hostQuery: ['ready'],
  openFile: ['ready'],
  sendFileData: ['file'],
  endFile: ['file'],
};

function codeOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return (e as HavenError).code;
  }
}

describe('receiver state table', () => {
  it('covers every state', () =>
    assert.deepEqual([...RECEIVER_STATES].sort(), Object.keys(RECEIVER_ALLOWED).sort()));

  for (const state of RECEIVER_STATES) {
    it(`state ${state}: accepts exactly its frames, rejects every other`, () => {
      let rejected = 0;
      for (const frame of FRAME_NAMES) {
        const want = RECEIVER_ALLOWED[state][frame];
        if (want) {
          const step = receiverStep(state, frame);
          assert.equal(step.next, want[0], `${state}/${frame} next`);
          assert.equal(step.onFailure ?? null, want[1], `${state}/${frame} onFailure`);
          continue;
        }
        rejected++;
        const code = codeOf(() => receiverStep(state, frame));
        const expected =
          frame === 'HELLO'
            ? 'PROTO_DUPLICATE_HELLO'
            : (frame === 'OPEN' || frame === 'FILE_OPEN') &&
                (state === 'delta' || state === 'sealed' || state === 'file')
              ? 'PROTO_DUPLICATE_OPEN'
              : 'PROTO_UNEXPECTED_FRAME';
        assert.equal(code, state === 'handshake' && frame === 'HELLO' ? null : expected, `${state}/${frame}`);
      }
      assert.equal(rejected, FRAME_NAMES.length - Object.keys(RECEIVER_ALLOWED[state]).length);
    });
  }

  it('never accepts a frame only the receiver sends (per DIRECTION)', () => {
    const receiverOnly = FRAME_NAMES.filter((f) => DIRECTION[f] === 'receiver');
    assert.deepEqual(receiverOnly.sort(), [
      'ABORTED',
      'COMMITTED',
      'DELTA_DURABLE',
      'DIGESTS',
      'FILE_COMMITTED',
      'FILE_OPENED',
      'HOST_REPLY',
      'OPENED',
      'QUERY_REPLY',
      'STAGED',
      'WELCOME',
    ]);
    for (const state of RECEIVER_STATES) {
      for (const f of [
        'WELCOME',
        'QUERY_REPLY',
        'OPENED',
        'DIGESTS',
        'STAGED',
        'DELTA_DURABLE',
        'COMMITTED',
        'ABORTED',
        'HOST_REPLY',
        'FILE_OPENED',
        'FILE_COMMITTED',
      ] as const) {
        assert.equal(
          codeOf(() => receiverStep(state, f)),
          'PROTO_UNEXPECTED_FRAME',
          `${state}/${f}`,
        );
      }
    }
  });
});

describe('sender state table', () => {
  it('covers every state', () =>
    assert.deepEqual([...SENDER_STATES].sort(), Object.keys(SENDER_ALLOWED).sort()));

  for (const state of SENDER_STATES) {
    it(`state ${state}: accepts exactly its frames, rejects every other`, () => {
      for (const frame of FRAME_NAMES) {
        if (frame === 'ERROR') continue;
        const want = SENDER_ALLOWED[state][frame];
        if (want) assert.equal(senderOnFrame(state, frame), want, `${state}/${frame}`);
        else
          assert.equal(
            codeOf(() => senderOnFrame(state, frame)),
            'PROTO_UNEXPECTED_FRAME',
            `${state}/${frame}`,
          );
      }
    });
  }

  it('an ERROR answers a request (non-fatal) or closes the session', () => {
    const requests: SenderState[] = [
      'querying',
      'opening',
      'ending',
      'committing',
      'aborting',
      'hostQuerying',
      'fileOpening',
      'fileEnding',
    ];
    for (const state of SENDER_STATES) {
      if (state === 'closed') {
        assert.equal(
          codeOf(() => senderOnFrame(state, 'ERROR', false)),
          'PROTO_UNEXPECTED_FRAME',
        );
        continue;
      }
      assert.equal(senderOnFrame(state, 'ERROR', true), 'closed', `${state} fatal`);
      assert.equal(
        senderOnFrame(state, 'ERROR', false),
        requests.includes(state) ? 'ready' : 'closed',
        state,
      );
    }
  });

  it('never accepts a frame only the sender sends (per DIRECTION)', () => {
    const senderOnly = FRAME_NAMES.filter((f) => DIRECTION[f] === 'sender');
    assert.deepEqual(senderOnly.sort(), [
      'ABORT',
      'COMMIT',
      'DIGESTS_REQ',
      'END_DELTA',
      'EXTENT',
      'FILE_DATA',
      'FILE_END',
      'FILE_OPEN',
      'HELLO',
      'HOST_QUERY',
      'MARK',
      'OPEN',
      'QUERY',
    ]);
    for (const state of SENDER_STATES) {
      for (const f of [
        'HELLO',
        'QUERY',
        'OPEN',
        'DIGESTS_REQ',
        'EXTENT',
        'MARK',
        'END_DELTA',
        'COMMIT',
        'ABORT',
        'HOST_QUERY',
        'FILE_OPEN',
        'FILE_DATA',
        'FILE_END',
      ] as const) {
        assert.equal(
          codeOf(() => senderOnFrame(state, f)),
          'PROTO_UNEXPECTED_FRAME',
          `${state}/${f}`,
        );
      }
    }
  });

  it('API calls are allowed exactly in their states', () => {
    assert.deepEqual(Object.keys(SENDER_OPS).sort(), Object.keys(SENDER_OPS_ALLOWED).sort());
    for (const op of Object.keys(SENDER_OPS_ALLOWED) as SenderOp[]) {
      for (const state of SENDER_STATES) {
        const code = codeOf(() => senderOnOp(state, op));
        if (SENDER_OPS_ALLOWED[op].includes(state)) assert.equal(code, null, `${op} in ${state}`);
        else assert.equal(code, 'PROTO_SENDER_MISUSE', `${op} in ${state}`);
      }
    }
    assert.equal(senderOnOp('ready', 'open'), 'opening');
    assert.equal(senderOnOp('delta', 'sendData'), 'delta');
    assert.equal(senderOnOp('delta', 'endDelta'), 'ending');
    assert.equal(senderOnOp('sealed', 'commit'), 'committing');
  });
});
