/**
 * The socket layer against a server that breaks the protocol. No installed NBD server can be made
 * to send a bad magic, an unknown cookie or an overrunning chunk, so this one is scripted: it
 * speaks a correct handshake (with Haven's own option codec) over a real unix socket, then answers
 * requests as each test dictates. It also shows what the client puts on the wire: requests split
 * at the advertised maximum block size, all in flight at once.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { NbdClient } from '../../src/nbd/client.ts';
import {
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_SEND_FLUSH,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
} from '../../src/nbd/constants.ts';
import type { NbdError } from '../../src/nbd/errors.ts';
import {
  decodeOption,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeMetaContextReply,
  encodeOptionReply,
  optionRequestLength,
} from '../../src/nbd/option-codec.ts';
import { encodeDataChunk, encodeNoneChunk, encodeSimpleReply } from '../../src/nbd/reply-encoder.ts';
import { decodeRequest, type RequestHeader } from '../../src/nbd/request-codec.ts';
import { scratch } from './nbd-helpers.ts';

const SIZE = 64 * 1024 * 1024;

interface Script {
  blockSize?: [number, number, number];
  /** Called once per request; may write anything to the socket. */
  onRequest(req: RequestHeader, s: net.Socket, all: RequestHeader[]): void;
}

/** A one-connection NBD server that follows the handshake, then the script. */
async function scriptedServer(
  t: TestContext,
  script: Script,
): Promise<{ path: string; closed: Promise<void> }> {
  const path = join(scratch(t), 'scripted.sock');
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => {
    closedResolve = r;
  });
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.on('close', () => closedResolve());
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    const requests: RequestHeader[] = [];
    s.write(encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          const n = optionRequestLength(buf);
          if (n === undefined) return;
          const opt = decodeOption(buf.subarray(0, n));
          buf = buf.subarray(n);
          if (opt.option === NBD_OPT_STRUCTURED_REPLY) s.write(encodeOptionReply(opt.option, NBD_REP_ACK));
          else if (opt.option === NBD_OPT_SET_META_CONTEXT && 'queries' in opt) {
            for (const [i, q] of opt.queries.entries()) {
              s.write(encodeOptionReply(opt.option, NBD_REP_META_CONTEXT, encodeMetaContextReply(i + 1, q)));
            }
            s.write(encodeOptionReply(opt.option, NBD_REP_ACK));
          } else if (opt.option === NBD_OPT_GO) {
            s.write(
              encodeOptionReply(
                opt.option,
                NBD_REP_INFO,
                encodeInfoExport(SIZE, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH),
              ),
            );
            const [min, pref, max] = script.blockSize ?? [1, 4096, 1 << 20];
            s.write(encodeOptionReply(opt.option, NBD_REP_INFO, encodeInfoBlockSize(min, pref, max)));
            s.write(encodeOptionReply(opt.option, NBD_REP_ACK));
            phase = 'transmission';
          }
        } else {
          if (buf.length < 28) return;
          const req = decodeRequest(buf);
          const total = 28 + (req.command === NBD_CMD_WRITE ? req.length : 0);
          if (buf.length < total) return;
          buf = buf.subarray(total);
          if (req.command === NBD_CMD_DISC) {
            s.end();
            return;
          }
          requests.push(req);
          script.onRequest(req, s, requests);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { path, closed };
}

describe('protocol violations on a live connection', () => {
  const cases: [string, string, (req: RequestHeader, s: net.Socket) => void][] = [
    ['bad magic', 'NBD_BAD_MAGIC', (_r, s) => s.write(Buffer.from('this is not an NBD reply at all'))],
    ['unknown cookie', 'NBD_UNKNOWN_COOKIE', (r, s) => s.write(encodeNoneChunk(r.cookie + 1000))],
    [
      'data outside the request',
      'NBD_REPLY_OVERRUN',
      (r, s) => s.write(encodeDataChunk(r.cookie, r.offset + r.length, Buffer.alloc(16), true)),
    ],
    [
      'a read answered with too little',
      'NBD_SHORT_REPLY',
      (r, s) => s.write(encodeDataChunk(r.cookie, r.offset, Buffer.alloc(1), true)),
    ],
    [
      'the server hanging up inside a reply',
      'NBD_TRUNCATED',
      (r, s) => s.end(encodeDataChunk(r.cookie, r.offset, Buffer.alloc(r.length), true).subarray(0, 40)),
    ],
    ['the server hanging up between replies', 'NBD_CONNECTION_LOST', (_r, s) => s.end()],
  ];
  for (const [what, code, misbehave] of cases) {
    it(`${what}: every pending request fails with ${code}, the socket is dropped`, async (t) => {
      let answered = false;
      const { path, closed } = await scriptedServer(t, {
        onRequest(req, s) {
          // The first read gets the bad reply; the rest never get an answer.
          if (!answered && req.command === NBD_CMD_READ) {
            answered = true;
            misbehave(req, s);
          }
        },
      });
      const c = await NbdClient.connect({ socketPath: path });
      t.after(() => c.close());
      const results = await Promise.allSettled([
        c.read(0, 4096),
        c.read(8192, 4096),
        c.flush(),
        c.read(65536, 512),
      ]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        const e = (r as PromiseRejectedResult).reason as NbdError;
        assert.equal(e.code, code);
        assert.equal(e.connectionUsable, false);
      }
      assert.equal(c.usable, false);
      await closed; // the client hung up
      await assert.rejects(c.read(0, 1), (e: NbdError) => e.code === 'NBD_CONNECTION_UNUSABLE');
    });
  }
});

describe('what the client sends', () => {
  it('splits reads at the advertised maximum, pipelines the pieces, honours the minimum block size', async (t) => {
    const seen: RequestHeader[] = [];
    const { path } = await scriptedServer(t, {
      blockSize: [512, 4096, 1 << 20],
      onRequest(req, s, all) {
        seen.push(req);
        // Answer only once all four pieces are in: proves they were in flight together.
        if (all.length === 4) {
          for (const r of [...all].reverse()) {
            const data = Buffer.alloc(r.length, (r.offset / (1 << 20)) & 0xff);
            s.write(encodeDataChunk(r.cookie, r.offset, data, true));
          }
        } else if (all.length > 4) {
          s.write(encodeSimpleReply(req.cookie, 0));
        }
      },
    });
    const c = await NbdClient.connect({ socketPath: path });
    t.after(() => c.close());
    assert.deepEqual(c.blockSize, { minimum: 512, preferred: 4096, maximum: 1 << 20 });
    const got = await c.read(0, 3.5 * (1 << 20));
    assert.deepEqual(
      seen.map((r) => [r.command, r.offset, r.length]),
      [
        [NBD_CMD_READ, 0, 1 << 20],
        [NBD_CMD_READ, 1 << 20, 1 << 20],
        [NBD_CMD_READ, 2 << 20, 1 << 20],
        [NBD_CMD_READ, 3 << 20, 1 << 19],
      ],
    );
    for (let i = 0; i < 4; i++) assert.equal(got[i * (1 << 20)], i);
    // Unaligned to the 512-byte minimum: refused before sending, connection fine.
    await assert.rejects(c.read(100, 512), (e: NbdError) => e.code === 'NBD_BAD_RANGE' && e.connectionUsable);
    await assert.rejects(c.read(512, 100), (e: NbdError) => e.code === 'NBD_BAD_RANGE');
    await c.flush();
    assert.equal(seen.length, 5);
  });
});
