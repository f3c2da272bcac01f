/**
 * The codes of protocol/ (the replication stream). Every PROTO_* code is part of the wire format:
 * a receiver sends it in an ERROR frame and the sender rethrows it with the same code
 * (docs/stream-protocol.md §7). `action` is also the hint a ProtocolError carries. docs/errors.md
 * is generated from this and the other components' catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

const PEER_BUG = 'The peer sent a malformed stream: check that both sides run the same Haven version.';

export const PROTOCOL_CODES = {
  PROTO_BAD_MAGIC: {
    kind: 'protocol',
    meaning: 'A frame does not start with "HV": the peer is not a Haven stream.',
    action: 'The peer is not a Haven stream (a shell banner or motd on stdout?).',
  },
  PROTO_UNKNOWN_FRAME: { kind: 'protocol', meaning: 'A frame has an unknown type.', action: PEER_BUG },
  PROTO_FRAME_TOO_LARGE: {
    kind: 'protocol',
    meaning: 'A frame’s body is longer than its type allows.',
    action: PEER_BUG,
  },
  PROTO_TRUNCATED: {
    kind: 'protocol',
    meaning: 'The stream ended inside a frame.',
    action: 'The stream ended inside a frame; the connection was cut. Run again to resume.',
  },
  PROTO_BAD_FRAME: {
    kind: 'protocol',
    meaning: 'A frame’s body is malformed (size, reserved field, JSON, schema, flags).',
    action: PEER_BUG,
  },
  PROTO_UNEXPECTED_FRAME: {
    kind: 'protocol',
    meaning: 'A frame is not allowed in the session’s current state.',
    action: PEER_BUG,
  },
  PROTO_DUPLICATE_HELLO: { kind: 'protocol', meaning: 'HELLO came after the handshake.', action: PEER_BUG },
  PROTO_DUPLICATE_OPEN: {
    kind: 'protocol',
    meaning: 'OPEN came while a delta was open.',
    action: 'Finish (END_DELTA, COMMIT) or ABORT the open delta before opening another.',
  },
  PROTO_VERSION: {
    kind: 'protocol',
    meaning: 'The two sides share no protocol version.',
    action: 'Upgrade Haven so both sides share a protocol version.',
  },
  PROTO_CAPABILITY: {
    kind: 'protocol',
    meaning: 'The sender did not offer the store’s digest algorithm, or a compression both sides support.',
    action: 'Use a digest algorithm and compression both sides support (the store fixes the digest).',
  },
  PROTO_AUTH_FAILED: {
    kind: 'refused',
    meaning:
      'The receiver did not accept the sender: token missing or wrong, or client certificate not accepted.',
    action:
      'Give the sender the token the receiver requires (--token-file), or a client certificate signed by its CA (--tls-ca).',
  },
  PROTO_BAD_DISK: { kind: 'protocol', meaning: 'A disk index or name is unknown.', action: PEER_BUG },
  PROTO_BAD_RANGE: {
    kind: 'protocol',
    meaning: 'An extent, mark or digest range lies outside the disk, is unaligned, empty or oversized.',
    action: 'Extents must be chunk-aligned and lie inside the disk.',
  },
  PROTO_OUT_OF_ORDER: {
    kind: 'protocol',
    meaning: 'An extent or mark goes backwards, or lies below a resumed watermark.',
    action: 'Extents must arrive in ascending order, disks in OPEN order, above resume watermarks.',
  },
  PROTO_BAD_COMPRESSION: {
    kind: 'protocol',
    meaning: 'A zstd payload does not decode to exactly its length, or compression was not agreed.',
    action: PEER_BUG,
  },
  PROTO_DIGEST_MISMATCH: {
    kind: 'integrity',
    meaning: 'Extent data does not match its digest; nothing of that frame was staged.',
    action: 'Data was damaged on the way; nothing bad was stored. Run again to resume.',
  },
  PROTO_DELTA_MISMATCH: {
    kind: 'integrity',
    meaning: 'END_DELTA’s counts or attempt digest differ from what the receiver got.',
    action: 'The receiver did not get what the sender sent; run again (it resumes from the last checkpoint).',
  },
  PROTO_IMAGE_MISMATCH: {
    kind: 'integrity',
    meaning: 'The generation-to-be would differ from the sender’s image digest.',
    action: 'The target copy would differ from the source; run a checksum resync.',
  },
  PROTO_CONNECTION_LOST: {
    kind: 'unavailable',
    meaning: 'The peer went away in the middle of the session.',
    action: 'The connection broke; run again to resume from what was staged.',
  },
  PROTO_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'No HELLO, WELCOME or BYE came in time, or a sender stayed idle too long inside a delta.',
    action: 'The peer did not answer in time; check the network and the peer’s log.',
  },
  PROTO_PEER_NOT_READING: {
    kind: 'unavailable',
    meaning:
      'The sender stopped reading the receiver’s answers while it kept asking (for the idle timeout): the receiver ended the session rather than buffer them without bound.',
    action:
      'Check the sending side (a stuck process, a network path that carries only one direction) and its log; the next run resumes the delta.',
  },
  PROTO_SENDER_MISUSE: {
    kind: 'internal',
    meaning: 'The engine called the stream sender out of order (local, never on the wire): a bug.',
    action: 'This is a bug in the caller of StreamSender; report it with the log.',
  },
  PROTO_BAD_OPTION: {
    kind: 'usage',
    meaning: 'A receiver option is inconsistent (maxExtentBytes not a multiple of the chunk size).',
    action: 'Give a maximum extent size that is a multiple of the 64 KiB chunk size.',
  },
  RECEIVE_READ_ONLY: {
    kind: 'refused',
    meaning: 'A receiver that answers a dry run was asked to take a delta.',
    action: 'Run the sender without --dry-run.',
  },
  RECEIVE_QUOTA_EXCEEDED: {
    kind: 'refused',
    meaning:
      'The delta would take the store or the server past its quota (the disks it declares, or the data it writes); refused before anything beyond the quota was stored.',
    action:
      'Raise the target’s `quota` or `servers: {<server>: {quota}}` (`haven receive --quota`, `--server-quota`), or keep fewer generations there (`haven protect --copies`, a job’s `copies`).',
  },
  RECEIVE_JOURNAL_UNSUPPORTED: {
    kind: 'refused',
    meaning: 'A sender opened a journal segment without the `journal` feature agreed in the handshake.',
    action: 'Upgrade Haven on the sending side; it offers the feature and checks that the receiver agreed.',
  },
} as const satisfies Record<string, CodeEntry>;
