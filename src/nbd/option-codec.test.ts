import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as C from './constants.ts';
import { NbdError } from './errors.ts';
import {
  decodeOption,
  encodeAbort,
  encodeClientFlags,
  encodeExportName,
  encodeExportNameReply,
  encodeGo,
  encodeGreeting,
  encodeInfo,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeListMetaContext,
  encodeMetaContextReply,
  encodeOption,
  encodeOptionReply,
  encodeSetMetaContext,
  encodeStructuredReply,
  optionRequestLength,
  parseExportNameReply,
  parseGreeting,
  parseInfoReply,
  parseMetaContextReply,
  parseOptionReplyHeader,
} from './option-codec.ts';

describe('option requests round-trip', () => {
  it('NBD_OPT_GO and NBD_OPT_INFO carry the export name and info requests', () => {
    for (const [encode, option] of [
      [encodeGo, C.NBD_OPT_GO],
      [encodeInfo, C.NBD_OPT_INFO],
    ] as const) {
      for (const name of ['', 'disk0', 'vda', 'ünïcode-näme', 'x'.repeat(4096)]) {
        for (const infos of [
          [],
          [C.NBD_INFO_BLOCK_SIZE],
          [C.NBD_INFO_NAME, C.NBD_INFO_DESCRIPTION, C.NBD_INFO_BLOCK_SIZE],
        ]) {
          const wire = encode(name, infos);
          assert.equal(optionRequestLength(wire), wire.length);
          assert.deepEqual(decodeOption(wire), { option, exportName: name, infos });
        }
      }
    }
  });

  it('NBD_OPT_SET_META_CONTEXT and LIST_META_CONTEXT carry every query', () => {
    for (const [encode, option] of [
      [encodeSetMetaContext, C.NBD_OPT_SET_META_CONTEXT],
      [encodeListMetaContext, C.NBD_OPT_LIST_META_CONTEXT],
    ] as const) {
      for (const queries of [
        [],
        ['base:allocation'],
        ['base:allocation', 'qemu:dirty-bitmap:backup-vda'],
        ['qemu:'],
      ]) {
        const wire = encode('vda', queries);
        assert.deepEqual(decodeOption(wire), { option, exportName: 'vda', queries });
      }
    }
  });

  it('options without data: STRUCTURED_REPLY, ABORT; and EXPORT_NAME', () => {
    assert.deepEqual(decodeOption(encodeStructuredReply()), {
      option: C.NBD_OPT_STRUCTURED_REPLY,
      data: Buffer.alloc(0),
    });
    assert.deepEqual(decodeOption(encodeAbort()), { option: C.NBD_OPT_ABORT, data: Buffer.alloc(0) });
    assert.deepEqual(decodeOption(encodeExportName('disk')), {
      option: C.NBD_OPT_EXPORT_NAME,
      exportName: 'disk',
    });
    assert.equal(encodeStructuredReply().length, 16);
  });

  it('an incomplete option is reported as needing more bytes', () => {
    const wire = encodeGo('disk', [C.NBD_INFO_BLOCK_SIZE]);
    for (let i = 0; i < wire.length; i++) assert.equal(optionRequestLength(wire.subarray(0, i)), undefined);
  });

  it('rejects names the protocol cannot carry, before anything is sent', () => {
    for (const bad of ['a\0b', 'x'.repeat(4097)]) {
      assert.throws(
        () => encodeGo(bad, []),
        (e: NbdError) => e.code === 'NBD_BAD_NAME' && e.kind === 'usage',
      );
      assert.throws(
        () => encodeSetMetaContext('ok', [bad]),
        (e: NbdError) => e.code === 'NBD_BAD_NAME',
      );
    }
  });

  it('client flags are 32 bits big-endian', () => {
    const b = encodeClientFlags(C.NBD_FLAG_C_FIXED_NEWSTYLE | C.NBD_FLAG_C_NO_ZEROES);
    assert.deepEqual([...b], [0, 0, 0, 3]);
  });

  it('decodeOption rejects malformed requests', () => {
    const go = encodeGo('disk', [3]);
    assert.throws(
      () => decodeOption(go.subarray(0, go.length - 1)),
      (e: NbdError) => e.code === 'NBD_BAD_OPTION',
    );
    const bad = Buffer.from(go);
    bad[0] = 0;
    assert.throws(
      () => decodeOption(bad),
      (e: NbdError) => e.code === 'NBD_BAD_OPTION',
    );
    // name length pointing past the data
    const over = Buffer.from(go);
    over.writeUInt32BE(1000, 16);
    assert.throws(
      () => decodeOption(over),
      (e: NbdError) => e.code === 'NBD_BAD_OPTION',
    );
    assert.deepEqual(decodeOption(encodeOption(77, Buffer.from('xyz'))), {
      option: 77,
      data: Buffer.from('xyz'),
    });
  });
});

describe('greeting', () => {
  it('round-trips handshake flags', () => {
    for (const flags of [C.NBD_FLAG_FIXED_NEWSTYLE, C.NBD_FLAG_FIXED_NEWSTYLE | C.NBD_FLAG_NO_ZEROES, 0]) {
      assert.deepEqual(parseGreeting(encodeGreeting(flags)), { handshakeFlags: flags });
    }
  });

  it('rejects non-NBD peers and oldstyle servers with distinct codes', () => {
    assert.throws(
      () => parseGreeting(Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian\r\n')),
      (e: NbdError) => e.code === 'NBD_NOT_NBD_SERVER',
    );
    const old = encodeGreeting(0);
    old.writeBigUInt64BE(0x00420281861253n, 8);
    assert.throws(
      () => parseGreeting(old),
      (e: NbdError) => e.code === 'NBD_OLDSTYLE_SERVER' && !e.connectionUsable,
    );
    const weird = encodeGreeting(1);
    weird.writeBigUInt64BE(1n, 8);
    assert.throws(
      () => parseGreeting(weird),
      (e: NbdError) => e.code === 'NBD_BAD_GREETING',
    );
  });
});

describe('option replies', () => {
  it('header round-trips and payloads decode per info type', () => {
    const exp = encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoExport(2 ** 40 + 512, 0x1234));
    const h = parseOptionReplyHeader(exp);
    assert.deepEqual(h, { option: C.NBD_OPT_GO, type: C.NBD_REP_INFO, length: 12 });
    assert.deepEqual(parseInfoReply(exp.subarray(20)), {
      info: 'export',
      size: 2 ** 40 + 512,
      transmissionFlags: 0x1234,
    });
    assert.deepEqual(parseInfoReply(encodeInfoBlockSize(512, 4096, 33554432)), {
      info: 'block-size',
      minimum: 512,
      preferred: 4096,
      maximum: 33554432,
    });
    assert.deepEqual(parseInfoReply(encodeInfoString(C.NBD_INFO_NAME, 'vda')), { info: 'name', name: 'vda' });
    assert.deepEqual(parseInfoReply(encodeInfoString(C.NBD_INFO_DESCRIPTION, 'Web01 disk')), {
      info: 'description',
      description: 'Web01 disk',
    });
    const unknown = Buffer.alloc(6);
    unknown.writeUInt16BE(99, 0);
    assert.deepEqual(parseInfoReply(unknown), { info: 'unknown', type: 99 });
    assert.deepEqual(parseMetaContextReply(encodeMetaContextReply(7, 'qemu:dirty-bitmap:b0')), {
      id: 7,
      name: 'qemu:dirty-bitmap:b0',
    });
    const ack = encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ACK);
    assert.deepEqual(parseOptionReplyHeader(ack), {
      option: C.NBD_OPT_STRUCTURED_REPLY,
      type: C.NBD_REP_ACK,
      length: 0,
    });
    const err = encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ERR_UNKNOWN, Buffer.from('no such export'));
    assert.equal(parseOptionReplyHeader(err).type, C.NBD_REP_ERR_UNKNOWN);
  });

  it('EXPORT_NAME reply: size and flags, with or without the 124 zero bytes', () => {
    for (const noZeroes of [true, false]) {
      const b = encodeExportNameReply(123456789, 0x3ff, noZeroes);
      assert.equal(b.length, noZeroes ? 10 : 134);
      assert.deepEqual(parseExportNameReply(b), { size: 123456789, transmissionFlags: 0x3ff });
    }
  });

  it('rejects bad magic, wrong fixed lengths and absurd sizes', () => {
    const bad = encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ACK);
    bad[3] = (bad[3] ?? 0) ^ 0xff;
    assert.throws(
      () => parseOptionReplyHeader(bad),
      (e: NbdError) => e.code === 'NBD_BAD_MAGIC' && !e.connectionUsable,
    );
    const huge = encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO);
    huge.writeUInt32BE(0x7fffffff, 16);
    assert.throws(
      () => parseOptionReplyHeader(huge),
      (e: NbdError) => e.code === 'NBD_BAD_REPLY',
    );
    assert.throws(() => parseInfoReply(encodeInfoExport(1, 1).subarray(0, 11)), NbdError);
    assert.throws(() => parseInfoReply(encodeInfoBlockSize(1, 1, 1).subarray(0, 13)), NbdError);
    assert.throws(() => parseInfoReply(Buffer.alloc(1)), NbdError);
    const tooBig = encodeInfoExport(0, 0);
    tooBig.writeUInt32BE(0xffffffff, 2);
    assert.throws(
      () => parseInfoReply(tooBig),
      (e: NbdError) => e.code === 'NBD_BAD_REPLY',
    );
    assert.throws(() => parseMetaContextReply(Buffer.alloc(4)), NbdError);
    assert.equal(C.NBD_INFO_EXPORT, 0);
  });
});
