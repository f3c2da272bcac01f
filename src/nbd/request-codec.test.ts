import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as C from './constants.ts';
import type { NbdError } from './errors.ts';
import {
  decodeRequest,
  encodeBlockStatus,
  encodeDisconnect,
  encodeFlush,
  encodeRead,
  encodeRequest,
  encodeTrim,
  encodeWriteHeader,
  encodeWriteZeroes,
} from './request-codec.ts';

// Offsets beyond 32 bits, and the largest a 2^53 number holds, must survive the 64-bit fields.
const OFFSETS = [0, 512, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 4096, Number.MAX_SAFE_INTEGER - 4095];
const COOKIES = [1, 2, 0xffffffff];

describe('request codec round trips', () => {
  it('READ, with and without DF', () => {
    for (const offset of OFFSETS) {
      for (const cookie of COOKIES) {
        for (const df of [false, true]) {
          const wire = encodeRead(cookie, offset, 65536, { df });
          assert.equal(wire.length, 28);
          assert.equal(wire.readUInt32BE(0), C.NBD_REQUEST_MAGIC);
          assert.deepEqual(decodeRequest(wire), {
            flags: df ? C.NBD_CMD_FLAG_DF : 0,
            command: C.NBD_CMD_READ,
            cookie,
            offset,
            length: 65536,
          });
        }
      }
    }
  });

  it('WRITE header, with and without FUA', () => {
    for (const fua of [false, true]) {
      assert.deepEqual(decodeRequest(encodeWriteHeader(9, 2 ** 33, 4096, { fua })), {
        flags: fua ? C.NBD_CMD_FLAG_FUA : 0,
        command: C.NBD_CMD_WRITE,
        cookie: 9,
        offset: 2 ** 33,
        length: 4096,
      });
    }
  });

  it('WRITE_ZEROES with every combination of FUA, NO_HOLE and FAST_ZERO', () => {
    for (let bits = 0; bits < 8; bits++) {
      const o = { fua: (bits & 1) !== 0, noHole: (bits & 2) !== 0, fastZero: (bits & 4) !== 0 };
      const flags =
        (o.fua ? C.NBD_CMD_FLAG_FUA : 0) |
        (o.noHole ? C.NBD_CMD_FLAG_NO_HOLE : 0) |
        (o.fastZero ? C.NBD_CMD_FLAG_FAST_ZERO : 0);
      assert.deepEqual(decodeRequest(encodeWriteZeroes(5, 1 << 20, 0xffffffff, o)), {
        flags,
        command: C.NBD_CMD_WRITE_ZEROES,
        cookie: 5,
        offset: 1 << 20,
        length: 0xffffffff,
      });
    }
  });

  it('FLUSH and DISC have zero offset and length; TRIM and BLOCK_STATUS carry theirs', () => {
    assert.deepEqual(decodeRequest(encodeFlush(3)), {
      flags: 0,
      command: C.NBD_CMD_FLUSH,
      cookie: 3,
      offset: 0,
      length: 0,
    });
    assert.deepEqual(decodeRequest(encodeDisconnect(0)), {
      flags: 0,
      command: C.NBD_CMD_DISC,
      cookie: 0,
      offset: 0,
      length: 0,
    });
    for (const fua of [false, true]) {
      assert.deepEqual(decodeRequest(encodeTrim(4, 8192, 1 << 30, { fua })), {
        flags: fua ? C.NBD_CMD_FLAG_FUA : 0,
        command: C.NBD_CMD_TRIM,
        cookie: 4,
        offset: 8192,
        length: 1 << 30,
      });
    }
    for (const reqOne of [false, true]) {
      assert.deepEqual(decodeRequest(encodeBlockStatus(6, 2 ** 35, 1 << 30, { reqOne })), {
        flags: reqOne ? C.NBD_CMD_FLAG_REQ_ONE : 0,
        command: C.NBD_CMD_BLOCK_STATUS,
        cookie: 6,
        offset: 2 ** 35,
        length: 1 << 30,
      });
    }
  });

  it('encodes into a caller buffer at an offset', () => {
    const into = Buffer.alloc(100, 0xee);
    encodeRequest({ flags: 1, command: C.NBD_CMD_WRITE, cookie: 77, offset: 42, length: 7 }, into, 50);
    assert.equal(into[49], 0xee);
    assert.equal(into[78], 0xee);
    assert.deepEqual(decodeRequest(into, 50), {
      flags: 1,
      command: C.NBD_CMD_WRITE,
      cookie: 77,
      offset: 42,
      length: 7,
    });
  });

  it('decodeRequest rejects a bad magic and a short header', () => {
    const w = encodeFlush(1);
    w[0] = 0;
    assert.throws(
      () => decodeRequest(w),
      (e: NbdError) => e.code === 'NBD_BAD_MAGIC',
    );
    assert.throws(
      () => decodeRequest(encodeFlush(1).subarray(0, 27)),
      (e: NbdError) => e.code === 'NBD_BAD_REQUEST',
    );
  });
});
