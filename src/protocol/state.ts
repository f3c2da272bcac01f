/**
 * The explicit state machines of both ends (docs/stream-protocol.md §6). Each is a table: for
 * every state, the frames it accepts and the state that follows. The transition functions are
 * pure; the I/O layers (sender.ts, receiver.ts) consult them before acting on a frame, so a frame
 * that is not in the table is rejected before it can touch the store.
 */
import { HavenError } from '../core/errors.ts';
import { protoError } from './errors.ts';
import type { FrameName } from './frames.ts';

// ---------------------------------------------------------------------------------------------
// Receiver

export type ReceiverState = 'handshake' | 'ready' | 'delta' | 'sealed' | 'file' | 'closed';
export const RECEIVER_STATES: readonly ReceiverState[] = [
  'handshake',
  'ready',
  'delta',
  'sealed',
  'file',
  'closed',
];

export interface ReceiverStep {
  /** State after the frame was handled. */
  next: ReceiverState;
  /**
   * State after handling failed with an error the session survives (the error goes back in a
   * non-fatal ERROR frame). Absent: any failure ends the session.
   */
  onFailure?: ReceiverState;
}

export const RECEIVER_TABLE: Record<ReceiverState, Partial<Record<FrameName, ReceiverStep>>> = {
  handshake: {
    HELLO: { next: 'ready' },
    ERROR: { next: 'closed' },
  },
  ready: {
    QUERY: { next: 'ready', onFailure: 'ready' },
    OPEN: { next: 'delta', onFailure: 'ready' },
    HOST_QUERY: { next: 'ready', onFailure: 'ready' },
    FILE_OPEN: { next: 'file', onFailure: 'ready' },
    BYE: { next: 'closed' },
    ERROR: { next: 'closed' },
  },
  delta: {
    EXTENT: { next: 'delta' },
    MARK: { next: 'delta' },
    DIGESTS_REQ: { next: 'delta' },
    END_DELTA: { next: 'sealed', onFailure: 'ready' },
    ABORT: { next: 'ready', onFailure: 'ready' },
    BYE: { next: 'closed' },
    ERROR: { next: 'closed' },
  },
  sealed: {
    COMMIT: { next: 'ready', onFailure: 'ready' },
    ABORT: { next: 'ready', onFailure: 'ready' },
    BYE: { next: 'closed' },
    ERROR: { next: 'closed' },
  },
  file: {
    FILE_DATA: { next: 'file' },
    FILE_END: { next: 'ready', onFailure: 'ready' },
    ABORT: { next: 'ready', onFailure: 'ready' },
    BYE: { next: 'closed' },
    ERROR: { next: 'closed' },
  },
  closed: {},
};

/** The step for `frame` in `state`, or a ProtocolError naming why the frame is not allowed. */
export function receiverStep(state: ReceiverState, frame: FrameName): ReceiverStep {
  const step = RECEIVER_TABLE[state][frame];
  if (step) return step;
  if (frame === 'HELLO') {
    throw protoError('PROTO_DUPLICATE_HELLO', 'HELLO after the handshake', { state });
  }
  if (
    (frame === 'OPEN' || frame === 'FILE_OPEN') &&
    (state === 'delta' || state === 'sealed' || state === 'file')
  ) {
    throw protoError('PROTO_DUPLICATE_OPEN', 'OPEN while a delta is open', { state });
  }
  throw protoError('PROTO_UNEXPECTED_FRAME', `${frame} frame in receiver state ${state}`, { state, frame });
}

// ---------------------------------------------------------------------------------------------
// Sender

export type SenderState =
  | 'handshake'
  | 'ready'
  | 'querying'
  | 'opening'
  | 'delta'
  | 'ending'
  | 'sealed'
  | 'committing'
  | 'aborting'
  | 'closing'
  | 'hostQuerying'
  | 'fileOpening'
  | 'file'
  | 'fileEnding'
  | 'closed';

export const SENDER_STATES: readonly SenderState[] = [
  'handshake',
  'ready',
  'querying',
  'opening',
  'delta',
  'ending',
  'sealed',
  'committing',
  'aborting',
  'closing',
  'hostQuerying',
  'fileOpening',
  'file',
  'fileEnding',
  'closed',
];

/**
 * States in which the sender waits for the answer to one request; a non-fatal ERROR answers the
 * request and returns the session to `ready`.
 */
export const SENDER_REQUEST_STATES: readonly SenderState[] = [
  'querying',
  'opening',
  'ending',
  'committing',
  'aborting',
  'hostQuerying',
  'fileOpening',
  'fileEnding',
];

/** Frames the sender accepts from the receiver, per state. ERROR is handled by senderOnFrame. */
export const SENDER_TABLE: Record<SenderState, Partial<Record<FrameName, SenderState>>> = {
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

/**
 * The sender's next state on receiving `frame`. An ERROR is accepted in every open state: a
 * non-fatal one in a request state answers that request (back to `ready`), anything else closes.
 */
export function senderOnFrame(state: SenderState, frame: FrameName, fatal = true): SenderState {
  if (frame === 'ERROR' && state !== 'closed') {
    return !fatal && SENDER_REQUEST_STATES.includes(state) ? 'ready' : 'closed';
  }
  const next = SENDER_TABLE[state][frame];
  if (next) return next;
  throw protoError('PROTO_UNEXPECTED_FRAME', `${frame} frame in sender state ${state}`, { state, frame });
}

export type SenderOp =
  | 'query'
  | 'open'
  | 'expectedDigests'
  | 'sendData'
  | 'sendZero'
  | 'mark'
  | 'endDelta'
  | 'commit'
  | 'abort'
  | 'close'
  | 'hostQuery'
  | 'openFile'
  | 'sendFileData'
  | 'endFile';

/** For each API call: the states it may be made in and the state it moves to. */
export const SENDER_OPS: Record<SenderOp, { from: readonly SenderState[]; to?: SenderState }> = {
  query: { from: ['ready'], to: 'querying' },
  open: { from: ['ready'], to: 'opening' },
  expectedDigests: { from: ['delta'] },
  sendData: { from: ['delta'] },
  sendZero: { from: ['delta'] },
  mark: { from: ['delta'] },
  endDelta: { from: ['delta'], to: 'ending' },
  commit: { from: ['sealed'], to: 'committing' },
  abort: { from: ['delta', 'sealed', 'file'], to: 'aborting' },
  close: { from: ['ready', 'delta', 'sealed', 'file'], to: 'closing' },
  hostQuery: { from: ['ready'], to: 'hostQuerying' },
  openFile: { from: ['ready'], to: 'fileOpening' },
  sendFileData: { from: ['file'] },
  endFile: { from: ['file'], to: 'fileEnding' },
};

export class SenderMisuseError extends HavenError {
  constructor(op: SenderOp, state: SenderState) {
    super('PROTO_SENDER_MISUSE', `StreamSender.${op}() called in state ${state}`, {
      kind: 'internal',
      hint: 'This is a bug in the caller of StreamSender; report it with the log.',
      details: { op, state },
    });
  }
}

/** The state after `op`, or SenderMisuseError when `op` is not allowed in `state`. */
export function senderOnOp(state: SenderState, op: SenderOp): SenderState {
  const rule = SENDER_OPS[op];
  if (!rule.from.includes(state)) throw new SenderMisuseError(op, state);
  return rule.to ?? state;
}
