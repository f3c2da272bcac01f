/**
 * The codes of nbd/ (the NBD client Haven reads source disks with, and the qemu-nbd it starts).
 * The protocol is https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md.
 * docs/errors.md is generated from this and the other components' catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

/** What to do when the NBD server broke the protocol (the connection is then dropped). */
const SERVER_BROKE_PROTOCOL =
  'Reconnect (run again); if it repeats with the same server, report it with the log and the server’s version.';

/** What to do about an error reply from the server to one request. */
const SERVER_REPLY =
  'Check the source disk and the NBD server’s log (qemu-nbd, or libvirtd for a backup job), then run again.';

export const NBD_CODES = {
  NBD_CONNECT_FAILED: {
    kind: 'unavailable',
    meaning: 'No connection to the NBD server (no one listens on the socket or port).',
    action:
      'Check that qemu-nbd (or the libvirt backup job) runs and the path or port is right; `haven doctor` checks qemu-nbd.',
  },
  NBD_CONNECT_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'Connecting to the NBD server and negotiating took longer than allowed.',
    action:
      'Check that the NBD server is alive; qemu-nbd with all its --shared client slots in use accepts a connection but never answers.',
  },
  NBD_NOT_NBD_SERVER: {
    kind: 'protocol',
    meaning: 'The peer did not greet with NBDMAGIC: it is not an NBD server.',
    action: 'Check the socket or port Haven connects to.',
  },
  NBD_OLDSTYLE_SERVER: {
    kind: 'protocol',
    meaning: 'The NBD server speaks only the oldstyle handshake, which Haven does not support.',
    action: 'Use a newer NBD server (qemu-nbd, nbdkit and nbd-server all speak newstyle).',
  },
  NBD_BAD_GREETING: {
    kind: 'protocol',
    meaning: 'The NBD greeting is truncated or has an unknown second magic.',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_NOT_FIXED_NEWSTYLE: {
    kind: 'unavailable',
    meaning: 'The NBD server does not support fixed newstyle negotiation.',
    action: 'Use a newer NBD server (qemu-nbd, nbdkit and nbd-server all support it).',
  },
  NBD_TLS_REQUIRED: {
    kind: 'unavailable',
    meaning: 'The NBD server requires TLS, and Haven connects without it.',
    action: 'Export without --tls-creds, or reach the server over SSH.',
  },
  NBD_NO_SUCH_EXPORT: {
    kind: 'not-found',
    meaning: 'The NBD server has no export of the name asked for.',
    action: 'Check the export name (qemu-nbd -x, or the name in the backup job XML).',
  },
  NBD_EXPORT_REFUSED: {
    kind: 'refused',
    meaning: 'The NBD server refused the export by policy.',
    action: 'Check the server configuration for this export.',
  },
  NBD_OPTION_FAILED: {
    kind: 'protocol',
    meaning: 'The NBD server answered a negotiation option with an error.',
    action: 'Check the server configuration for this export.',
  },
  NBD_META_CONTEXT_UNSUPPORTED: {
    kind: 'not-found',
    meaning: 'The export does not offer a meta context Haven asked for (a dirty bitmap, or base:allocation).',
    action:
      'For a bitmap, check the checkpoint name (qemu-nbd -B, backup-begin); the next run falls back to a checksum resync.',
  },
  NBD_SERVER_SHUTTING_DOWN: {
    kind: 'unavailable',
    meaning: 'The NBD server is shutting down and refused the negotiation.',
    action: 'Run again when the server is back.',
  },
  NBD_BAD_NAME: {
    kind: 'usage',
    meaning: 'An export or meta context name is not a valid NBD string.',
    action: 'Use a UTF-8 name without NUL characters, at most 4096 bytes long.',
  },
  NBD_BAD_OPTION: {
    kind: 'protocol',
    meaning: 'A negotiation option request is malformed.',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_BAD_MAGIC: {
    kind: 'protocol',
    meaning: 'A reply, option reply or request has a bad magic number: the stream is out of step.',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_BAD_REPLY: {
    kind: 'protocol',
    meaning: 'A reply does not fit the protocol (wrong type for the request, bad length).',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_BAD_REQUEST: {
    kind: 'protocol',
    meaning: 'A request header is truncated.',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_UNKNOWN_COOKIE: {
    kind: 'protocol',
    meaning: 'A reply names a cookie no pending request has.',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_REPLY_OVERRUN: {
    kind: 'protocol',
    meaning: 'A reply describes bytes outside the request it answers.',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_SHORT_REPLY: {
    kind: 'protocol',
    meaning: 'A read completed with fewer bytes described than were asked for.',
    action: SERVER_BROKE_PROTOCOL,
  },
  NBD_INTERNAL: {
    kind: 'internal',
    meaning: 'The NBD client reached a state it should not: a bug.',
    action: 'Report it with the log file of this run.',
  },
  NBD_BAD_RANGE: {
    kind: 'usage',
    meaning:
      'A request lies outside the export or is not aligned to its minimum block size; nothing was sent.',
    action: 'A bug in the caller if it comes from Haven itself: report it with the log.',
  },
  NBD_UNSUPPORTED: {
    kind: 'unavailable',
    meaning: 'The NBD server did not advertise a feature a request needs (trim, fast zero, block status…).',
    action: 'Use an NBD server that supports it (a current qemu-nbd); `haven doctor` shows the versions.',
  },
  NBD_READ_ONLY: {
    kind: 'refused',
    meaning: 'A write was asked of a read-only export.',
    action: 'Export it writable to change it.',
  },
  NBD_UNKNOWN_CONTEXT: {
    kind: 'usage',
    meaning: 'Block status was asked for a meta context not negotiated on this connection.',
    action: 'A bug in the caller if it comes from Haven itself: report it with the log.',
  },
  NBD_CONNECTION_LOST: {
    kind: 'io',
    meaning: 'The NBD connection dropped.',
    action: 'Check that the NBD server (qemu-nbd or QEMU) still runs, then run again.',
  },
  NBD_TRUNCATED: {
    kind: 'io',
    meaning: 'The NBD stream ended in the middle of a reply.',
    action: 'Check that the NBD server (qemu-nbd or QEMU) still runs, then run again.',
  },
  NBD_CONNECTION_UNUSABLE: {
    kind: 'io',
    meaning: 'A request was made on a connection that broke earlier (the cause names why).',
    action: 'Open a new connection: run again.',
  },
  NBD_CLOSED: {
    kind: 'usage',
    meaning: 'A request was made on a connection that was already closed.',
    action: 'A bug in the caller if it comes from Haven itself: report it with the log.',
  },
  NBD_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'The NBD server sent nothing for too long while requests were pending.',
    action: 'Check that the server is alive (and the disk behind it), or raise requestTimeoutMs.',
  },
  NBD_SERVER_START_FAILED: {
    kind: 'unavailable',
    meaning: 'qemu-nbd could not export an image.',
    action:
      'Check the image path and format, that no other process holds its lock, and that every bitmap named with -B exists.',
  },
  NBD_EPERM: {
    kind: 'refused',
    meaning: 'The NBD server refused a request with EPERM.',
    action: 'Check that the export is writable.',
  },
  NBD_EIO: {
    kind: 'io',
    meaning: 'The NBD server hit an I/O error on its image (EIO).',
    action: SERVER_REPLY,
  },
  NBD_ENOMEM: {
    kind: 'resource',
    meaning: 'The NBD server ran out of memory (ENOMEM).',
    action: 'Free memory on the server’s host, or use fewer requests in flight.',
  },
  NBD_EINVAL: {
    kind: 'protocol',
    meaning: 'The NBD server rejected a request as invalid (EINVAL, or an error value it did not know).',
    action: SERVER_REPLY,
  },
  NBD_ENOSPC: {
    kind: 'resource',
    meaning: 'The NBD server has no space left for a write (ENOSPC).',
    action: 'Free space behind the export, then run again.',
  },
  NBD_EOVERFLOW: {
    kind: 'protocol',
    meaning: 'A request was too large for an unfragmented reply (EOVERFLOW).',
    action: SERVER_REPLY,
  },
  NBD_ENOTSUP: {
    kind: 'unavailable',
    meaning: 'The NBD server does not support the operation here (ENOTSUP), e.g. fast zeroing.',
    action: 'Nothing when Haven falls back to the slow path; otherwise use a current qemu-nbd.',
  },
  NBD_ESHUTDOWN: {
    kind: 'unavailable',
    meaning: 'The NBD server is shutting down (ESHUTDOWN); the connection is dropped.',
    action: 'Run again when the server is back.',
  },
} as const satisfies Record<string, CodeEntry>;
