import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { devNumbers, localVirtualSize, qcow2VirtualSize } from './image-size.ts';

function header(magic: number, version: number, size: bigint): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(magic, 0);
  b.writeUInt32BE(version, 4);
  b.writeBigUInt64BE(size, 24);
  return b;
}

test('qcow2VirtualSize reads the size of v2 and v3 headers and nothing else', () => {
  assert.equal(qcow2VirtualSize(header(0x514649fb, 3, 2n ** 31n)), 2 ** 31);
  assert.equal(qcow2VirtualSize(header(0x514649fb, 2, 64n * 1024n * 1024n)), 64 * 1024 * 1024);
  assert.equal(qcow2VirtualSize(header(0x514649fb, 4, 1024n)), undefined, 'unknown version');
  assert.equal(qcow2VirtualSize(header(0x12345678, 3, 1024n)), undefined, 'not qcow2');
  assert.equal(qcow2VirtualSize(header(0x514649fb, 3, 2n ** 60n)), undefined, 'beyond a safe integer');
  assert.equal(qcow2VirtualSize(header(0x514649fb, 3, 1024n).subarray(0, 20)), undefined, 'short read');
});

test('devNumbers splits dev_t as glibc does', () => {
  assert.equal(devNumbers((8 << 8) | 1), '8:1');
  assert.equal(devNumbers((253 << 8) | 0), '253:0');
  // minor 300 spills into bits 20..31
  assert.equal(devNumbers((259 << 8) | (300 & 0xff) | ((300 & ~0xff) << 12)), '259:300');
});

test('localVirtualSize: raw file size, qcow2 header, undefined for other formats', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-size-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'a.raw'), Buffer.alloc(12345));
  await writeFile(join(dir, 'b.qcow2'), header(0x514649fb, 3, 5n * 1024n ** 3n));
  assert.equal(await localVirtualSize(join(dir, 'a.raw'), 'raw'), 12345);
  assert.equal(await localVirtualSize(join(dir, 'b.qcow2'), 'qcow2'), 5 * 1024 ** 3);
  assert.equal(await localVirtualSize(join(dir, 'a.raw'), 'qcow2'), undefined, 'not a qcow2 header');
  assert.equal(await localVirtualSize(join(dir, 'a.raw'), 'vmdk'), undefined);
  await assert.rejects(localVirtualSize(join(dir, 'gone.raw'), 'raw'), /ENOENT/);
});
