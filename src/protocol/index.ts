/**
 * The Haven replication stream (docs/design.md §5, docs/stream-protocol.md): a framed binary protocol
 * over any byte stream. The engine drives a StreamSender; `haven receive` runs a StreamReceiver
 * over the store.
 */
export { BufferPool } from './buffer-pool.ts';
export { PROTOCOL_CODES, type ProtocolCode, ProtocolError, RemoteError } from './errors.ts';
export {
  type CompressionAlgorithm,
  FEATURE_HOST_FILES,
  MAX_DIGESTS_PER_REQUEST,
  MAX_EXTENT_BYTES,
  PROTOCOL_VERSIONS,
  type StoreCapacity,
} from './frames.ts';
export type { Quota } from './quota.ts';
export { type ReceiverOptions, StreamReceiver } from './receiver.ts';
export {
  type EndDeltaOptions,
  type OpenResult,
  type SenderOptions,
  type SenderStats,
  StreamSender,
  type TargetView,
} from './sender.ts';
