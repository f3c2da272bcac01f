/**
 * Numbers of the NBD protocol, named as in NetworkBlockDevice/nbd doc/proto.md ("Values") so the
 * code can be read against the spec. Magic values are big-endian on the wire.
 */

/** 'NBDMAGIC': first 8 bytes the server sends (proto.md "Newstyle negotiation"). */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': newstyle greeting, and the prefix of every option request. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Oldstyle greeting (cliserv_magic); we do not speak oldstyle. */
export const NBD_CLISERV_MAGIC = 0x00420281861253n;
/** Prefix of every option reply during fixed newstyle haggling. */
export const NBD_REP_MAGIC = 0x3e889045565a9n;

export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server, 16 bits). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;

/** Client flags (32 bits). */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags (16 bits). */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

/** Option types. */
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

/** Option reply types; errors have bit 31 set. */
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_PLATFORM = 0x80000004;
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;

/** NBD_INFO_* types inside NBD_REP_INFO (and requested by NBD_OPT_GO / NBD_OPT_INFO). */
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Transmission commands. */
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

/** Command flags. */
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

/** Structured reply flags and chunk types. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
/** Error chunk types have bit 15 set (proto.md "Structured reply types"). */
export const NBD_REPLY_TYPE_ERROR_BIT = 1 << 15;
export const NBD_REPLY_TYPE_ERROR = NBD_REPLY_TYPE_ERROR_BIT + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = NBD_REPLY_TYPE_ERROR_BIT + 2;

/** Error values (proto.md "Error values"). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** base:allocation flags. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** qemu:dirty-bitmap:<name> flag (QEMU docs/interop/nbd.txt). */
export const NBD_STATE_DIRTY = 1 << 0;

export const CONTEXT_BASE_ALLOCATION = 'base:allocation';
export const CONTEXT_DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';

/** Sizes of fixed wire structures. */
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_HEADER_SIZE = 16;
export const STRUCTURED_REPLY_HEADER_SIZE = 20;
export const OPTION_REPLY_HEADER_SIZE = 20;

/** Longest string the spec allows (export names, messages, context names). */
export const NBD_MAX_STRING = 4096;

/** Default block size constraints when the server advertises none (proto.md "Block size constraints"). */
export const DEFAULT_MIN_BLOCK = 1;
export const DEFAULT_PREFERRED_BLOCK = 4096;
/** What a client "desiring maximum interoperability" limits reads and writes to: 32 MiB. */
export const DEFAULT_MAX_BLOCK = 1 << 25;
/** Lengths are 32-bit on the wire. */
export const MAX_REQUEST_LENGTH = 0xffffffff;

export function commandName(cmd: number): string {
  switch (cmd) {
    case NBD_CMD_READ:
      return 'READ';
    case NBD_CMD_WRITE:
      return 'WRITE';
    case NBD_CMD_DISC:
      return 'DISC';
    case NBD_CMD_FLUSH:
      return 'FLUSH';
    case NBD_CMD_TRIM:
      return 'TRIM';
    case NBD_CMD_CACHE:
      return 'CACHE';
    case NBD_CMD_WRITE_ZEROES:
      return 'WRITE_ZEROES';
    case NBD_CMD_BLOCK_STATUS:
      return 'BLOCK_STATUS';
    default:
      return `CMD_${cmd}`;
  }
}

export function optionName(opt: number): string {
  switch (opt) {
    case NBD_OPT_EXPORT_NAME:
      return 'EXPORT_NAME';
    case NBD_OPT_ABORT:
      return 'ABORT';
    case NBD_OPT_LIST:
      return 'LIST';
    case NBD_OPT_STARTTLS:
      return 'STARTTLS';
    case NBD_OPT_INFO:
      return 'INFO';
    case NBD_OPT_GO:
      return 'GO';
    case NBD_OPT_STRUCTURED_REPLY:
      return 'STRUCTURED_REPLY';
    case NBD_OPT_LIST_META_CONTEXT:
      return 'LIST_META_CONTEXT';
    case NBD_OPT_SET_META_CONTEXT:
      return 'SET_META_CONTEXT';
    default:
      return `OPT_${opt}`;
  }
}

export function optionReplyName(rep: number): string {
  switch (rep) {
    case NBD_REP_ACK:
      return 'ACK';
    case NBD_REP_SERVER:
      return 'SERVER';
    case NBD_REP_INFO:
      return 'INFO';
    case NBD_REP_META_CONTEXT:
      return 'META_CONTEXT';
    case NBD_REP_ERR_UNSUP:
      return 'ERR_UNSUP';
    case NBD_REP_ERR_POLICY:
      return 'ERR_POLICY';
    case NBD_REP_ERR_INVALID:
      return 'ERR_INVALID';
    case NBD_REP_ERR_PLATFORM:
      return 'ERR_PLATFORM';
    case NBD_REP_ERR_TLS_REQD:
      return 'ERR_TLS_REQD';
    case NBD_REP_ERR_UNKNOWN:
      return 'ERR_UNKNOWN';
    case NBD_REP_ERR_SHUTDOWN:
      return 'ERR_SHUTDOWN';
    case NBD_REP_ERR_BLOCK_SIZE_REQD:
      return 'ERR_BLOCK_SIZE_REQD';
    case NBD_REP_ERR_TOO_BIG:
      return 'ERR_TOO_BIG';
    default:
      return `REP_0x${rep.toString(16)}`;
  }
}
