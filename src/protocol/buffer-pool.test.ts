import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DIRECT_ALIGN, isAlignedMemory } from '../core/aligned-memory.ts';
import { BufferPool } from './buffer-pool.ts';

describe('BufferPool', () => {
  it('hands out views and reuses a buffer once it came back (also through a view of a view)', () => {
    const pool = new BufferPool(1024);
    const a = pool.take(100);
    assert.equal(a.length, 100);
    const b = pool.take(1024);
    assert.notEqual(a.buffer, b.buffer);
    pool.release(a.subarray(10, 20));
    const c = pool.take(500);
    assert.equal(c.buffer, a.buffer);
    assert.equal(pool.allocated, 2);
  });

  it('ignores foreign buffers and double releases; oversize requests are not pooled', () => {
    const pool = new BufferPool(64);
    pool.release(Buffer.alloc(64));
    pool.release(undefined);
    const a = pool.take(64);
    pool.release(a);
    pool.release(a);
    assert.equal(pool.take(64).buffer, a.buffer);
    assert.notEqual(pool.take(64).buffer, a.buffer);
    assert.equal(pool.take(65).length, 65);
    assert.equal(pool.allocated, 2);
  });

  it('alignAt puts that byte of every view on an aligned address, reused buffers too', () => {
    const pool = new BufferPool(3 * DIRECT_ALIGN, { alignAt: 44 });
    const a = pool.take(2 * DIRECT_ALIGN);
    assert.ok(isAlignedMemory(a.subarray(44)));
    assert.ok(!isAlignedMemory(a));
    pool.release(a);
    const b = pool.take(3 * DIRECT_ALIGN);
    assert.equal(b.buffer, a.buffer);
    assert.equal(b.length, 3 * DIRECT_ALIGN);
    assert.ok(isAlignedMemory(b.subarray(44)));
    assert.ok(isAlignedMemory(new BufferPool(100, { alignAt: 0 }).take(100)));
  });
});
