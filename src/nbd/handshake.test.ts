/**
 * The handshake state machine against scripted server bytes. The real servers (qemu-nbd, nbdkit)
 * are covered by the integration tests; these cases are the ones no installed server produces on
 * demand: refused structured replies, no NBD_OPT_GO, TLS required, malformed replies.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as C from './constants.ts';
import type { NbdError } from './errors.ts';
import { Handshake, type HandshakeStep } from './handshake.ts';
import {
  decodeOption,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextReply,
  encodeOptionReply,
  optionRequestLength,
} from './option-codec.ts';

const FLAGS = C.NBD_FLAG_HAS_FLAGS | C.NBD_FLAG_READ_ONLY | C.NBD_FLAG_SEND_FLUSH | C.NBD_FLAG_SEND_DF;

/** Splits what the client sent (client flags first, if any) into decoded options. */
function sentOptions(sent: Buffer, withFlags: boolean) {
  let rest = withFlags ? sent.subarray(4) : sent;
  const out = [];
  for (;;) {
    const n = optionRequestLength(rest);
    if (n === undefined) break;
    out.push(decodeOption(rest.subarray(0, n)));
    rest = rest.subarray(n);
  }
  assert.equal(rest.length, 0, 'client sent a partial option');
  return out;
}

function feedAll(h: Handshake, server: Buffer, sliceSize = server.length) {
  const sent: Buffer[] = [];
  let last: HandshakeStep = { send: [] };
  for (let p = 0; p < server.length; p += sliceSize) {
    last = h.feed(server.subarray(p, p + sliceSize));
    sent.push(...last.send);
    if (last.done || last.error) break;
  }
  return { sent: Buffer.concat(sent), last };
}

function happyServer(noZeroes: boolean) {
  return Buffer.concat([
    encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE | (noZeroes ? C.NBD_FLAG_NO_ZEROES : 0)),
    encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ACK),
    encodeOptionReply(
      C.NBD_OPT_SET_META_CONTEXT,
      C.NBD_REP_META_CONTEXT,
      encodeMetaContextReply(2, 'qemu:dirty-bitmap:b0'),
    ),
    encodeOptionReply(
      C.NBD_OPT_SET_META_CONTEXT,
      C.NBD_REP_META_CONTEXT,
      encodeMetaContextReply(0, 'base:allocation'),
    ),
    encodeOptionReply(C.NBD_OPT_SET_META_CONTEXT, C.NBD_REP_ACK),
    encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoString(C.NBD_INFO_DESCRIPTION, 'Web01 vda')),
    encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoBlockSize(512, 4096, 1 << 25)),
    encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoExport(10 * 2 ** 30, FLAGS)),
    encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ACK),
  ]);
}

describe('handshake', () => {
  it('negotiates structured replies, meta contexts and GO, at any slicing', () => {
    for (const noZeroes of [true, false]) {
      for (const slice of [1, 3, 20, 1000]) {
        const h = new Handshake({
          exportName: 'vda',
          metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0'],
        });
        const { sent, last } = feedAll(h, happyServer(noZeroes), slice);
        assert.equal(last.error, undefined);
        assert.equal(sent.readUInt32BE(0), noZeroes ? 3 : 1, 'client flags');
        assert.deepEqual(sentOptions(sent, true), [
          { option: C.NBD_OPT_STRUCTURED_REPLY, data: Buffer.alloc(0) },
          {
            option: C.NBD_OPT_SET_META_CONTEXT,
            exportName: 'vda',
            queries: ['base:allocation', 'qemu:dirty-bitmap:b0'],
          },
          { option: C.NBD_OPT_GO, exportName: 'vda', infos: [C.NBD_INFO_BLOCK_SIZE] },
        ]);
        const d = last.done!;
        assert.equal(d.size, 10 * 2 ** 30);
        assert.equal(d.structured, true);
        assert.equal(d.via, 'go');
        assert.deepEqual(d.blockSize, { minimum: 512, preferred: 4096, maximum: 1 << 25 });
        assert.equal(d.blockSizeAdvertised, true);
        assert.deepEqual(
          [...d.contexts],
          [
            ['qemu:dirty-bitmap:b0', 2],
            ['base:allocation', 0],
          ],
        );
        assert.equal(d.description, 'Web01 vda');
        assert.equal(d.flags.readOnly, true);
        assert.equal(d.flags.canFlush, true);
        assert.equal(d.flags.canDf, true);
        assert.equal(d.flags.canTrim, false);
        assert.equal(h.state, 'done');
      }
    }
  });

  it('passes on bytes that follow the final ACK (they belong to transmission)', () => {
    const h = new Handshake({ exportName: '', metaContexts: [] });
    const server = Buffer.concat([
      encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE),
      encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ACK),
      encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoExport(4096, C.NBD_FLAG_HAS_FLAGS)),
      encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ACK),
      Buffer.from('extra'),
    ]);
    const { sent, last } = feedAll(h, server);
    assert.equal(last.rest?.toString(), 'extra');
    assert.deepEqual(
      last.done?.blockSize,
      { minimum: 1, preferred: 4096, maximum: 1 << 25 },
      'defaults without NBD_INFO_BLOCK_SIZE',
    );
    assert.equal(last.done?.blockSizeAdvertised, false);
    assert.deepEqual(
      sentOptions(sent, true).map((o) => o.option),
      [C.NBD_OPT_STRUCTURED_REPLY, C.NBD_OPT_GO],
    );
  });

  it('continues with simple replies when structured replies are refused and no contexts were asked for', () => {
    const h = new Handshake({ exportName: 'x', metaContexts: [] });
    const { last } = feedAll(
      h,
      Buffer.concat([
        encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE),
        encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ERR_UNSUP),
        encodeOptionReply(
          C.NBD_OPT_GO,
          C.NBD_REP_INFO,
          encodeInfoExport(4096, C.NBD_FLAG_HAS_FLAGS | C.NBD_FLAG_SEND_DF),
        ),
        encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ACK),
      ]),
    );
    assert.equal(last.done?.structured, false);
    assert.equal(last.done?.flags.canDf, false, 'DF means nothing without structured replies');
  });

  it('falls back to NBD_OPT_EXPORT_NAME when the server lacks NBD_OPT_GO', () => {
    for (const noZeroes of [true, false]) {
      const h = new Handshake({ exportName: 'old', metaContexts: [] });
      const f = C.NBD_FLAG_HAS_FLAGS | C.NBD_FLAG_SEND_WRITE_ZEROES | C.NBD_FLAG_SEND_FAST_ZERO;
      const server = Buffer.concat([
        encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE | (noZeroes ? C.NBD_FLAG_NO_ZEROES : 0)),
        encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ERR_UNSUP),
        encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ERR_UNSUP),
        encodeExportNameReply(1 << 30, f, noZeroes),
      ]);
      const { sent, last } = feedAll(h, server, 7);
      assert.equal(last.error, undefined);
      assert.equal(last.done?.via, 'export-name');
      assert.equal(last.done?.size, 1 << 30);
      assert.equal(last.done?.flags.canFastZero, true);
      assert.deepEqual(sentOptions(sent, true).at(-1), { option: C.NBD_OPT_EXPORT_NAME, exportName: 'old' });
    }
  });

  const failing: [string, Buffer[], string, string][] = [
    [
      'unknown export',
      [encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ERR_UNKNOWN, Buffer.from('no export'))],
      'NBD_NO_SUCH_EXPORT',
      'not-found',
    ],
    [
      'TLS required',
      [encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ERR_TLS_REQD)],
      'NBD_TLS_REQUIRED',
      'unavailable',
    ],
    ['policy', [encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ERR_POLICY)], 'NBD_EXPORT_REFUSED', 'refused'],
    [
      'shutting down',
      [encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ERR_SHUTDOWN)],
      'NBD_SERVER_SHUTTING_DOWN',
      'unavailable',
    ],
    ['GO without export info', [encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ACK)], 'NBD_BAD_REPLY', 'protocol'],
    [
      'reply to another option',
      [encodeOptionReply(C.NBD_OPT_SET_META_CONTEXT, C.NBD_REP_ACK)],
      'NBD_BAD_REPLY',
      'protocol',
    ],
    [
      'unexpected reply type',
      [encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_META_CONTEXT, encodeMetaContextReply(1, 'x:y'))],
      'NBD_BAD_REPLY',
      'protocol',
    ],
    [
      'bad block size',
      [encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoBlockSize(3, 4096, 1 << 20))],
      'NBD_BAD_REPLY',
      'protocol',
    ],
  ];
  for (const [what, replies, code, kind] of failing) {
    it(`fails typed and aborts on: ${what}`, () => {
      const h = new Handshake({ exportName: 'vda', metaContexts: [] });
      const { sent, last } = feedAll(
        h,
        Buffer.concat([
          encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE),
          encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ACK),
          ...replies,
        ]),
      );
      assert.equal(last.error?.code, code);
      assert.equal(last.error?.kind, kind);
      assert.equal(last.error?.connectionUsable, false);
      assert.equal(sentOptions(sent, true).at(-1)?.option, C.NBD_OPT_ABORT, 'soft disconnect');
      assert.equal(h.state, 'failed');
      assert.deepEqual(h.feed(Buffer.from('more')).send, [], 'a failed handshake ignores further input');
    });
  }

  it('requires every requested meta context', () => {
    const granted = (replies: Buffer[]) => {
      const h = new Handshake({
        exportName: 'vda',
        metaContexts: ['base:allocation', 'qemu:dirty-bitmap:gone'],
      });
      return feedAll(
        h,
        Buffer.concat([
          encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE),
          encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ACK),
          ...replies,
        ]),
      ).last;
    };
    const partly = granted([
      encodeOptionReply(
        C.NBD_OPT_SET_META_CONTEXT,
        C.NBD_REP_META_CONTEXT,
        encodeMetaContextReply(0, 'base:allocation'),
      ),
      encodeOptionReply(C.NBD_OPT_SET_META_CONTEXT, C.NBD_REP_ACK),
    ]);
    assert.equal(partly.error?.code, 'NBD_META_CONTEXT_UNSUPPORTED');
    assert.deepEqual(partly.error?.details?.missing, ['qemu:dirty-bitmap:gone']);
    assert.match(partly.error?.hint ?? '', /bitmap/);
    const refused = granted([encodeOptionReply(C.NBD_OPT_SET_META_CONTEXT, C.NBD_REP_ERR_UNSUP)]);
    assert.equal(refused.error?.code, 'NBD_META_CONTEXT_UNSUPPORTED');
    const h = new Handshake({ exportName: 'vda', metaContexts: ['base:allocation'] });
    const noStructured = feedAll(
      h,
      Buffer.concat([
        encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE),
        encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ERR_UNSUP),
      ]),
    ).last;
    assert.equal(noStructured.error?.code, 'NBD_META_CONTEXT_UNSUPPORTED');
  });

  it('rejects servers without fixed newstyle, oldstyle servers and non-NBD peers without sending options', () => {
    const cases: [Buffer, string][] = [
      [encodeGreeting(0), 'NBD_NOT_FIXED_NEWSTYLE'],
      [
        Buffer.concat([Buffer.from('NBDMAGIC'), Buffer.from('0000420281861253', 'hex'), Buffer.alloc(2)]),
        'NBD_OLDSTYLE_SERVER',
      ],
      [Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n'), 'NBD_NOT_NBD_SERVER'],
    ];
    for (const [server, code] of cases) {
      const h = new Handshake({ exportName: '', metaContexts: [] });
      const step = h.feed(server);
      assert.equal((step.error as NbdError | undefined)?.code, code);
      assert.deepEqual(step.send, []);
    }
  });

  it('rejects an invalid export name before connecting', () => {
    assert.throws(
      () => new Handshake({ exportName: 'a\0b', metaContexts: [] }),
      (e: NbdError) => e.code === 'NBD_BAD_NAME',
    );
  });
});
