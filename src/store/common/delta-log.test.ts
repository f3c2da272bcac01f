import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../../core/errors.ts';
import {
  checkIndexHeader,
  ENTRY_HEADER_BYTES,
  encodeEntry,
  encodeIndexHeader,
  IndexDecoder,
  type IndexEntry,
} from './delta-log.ts';

function digests(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n * 32);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

const firstEntry: IndexEntry = {
  kind: 'data',
  disk: 0,
  offset: 0,
  length: 3 * 65536,
  dataPos: 0,
  digests: digests(3, 1),
};

const entries: IndexEntry[] = [
  firstEntry,
  { kind: 'zero', disk: 1, offset: 2 ** 40, length: 2 ** 33, dataPos: 0, digests: Buffer.alloc(0) },
  {
    kind: 'data',
    disk: 65535,
    offset: 2 ** 47 - 65536,
    length: 1000,
    dataPos: 2 ** 46,
    digests: digests(1, 9),
  },
];

test('entries round-trip, whatever the slicing', () => {
  const bytes = Buffer.concat(entries.map((e) => encodeEntry(e)));
  for (let step = 1; step <= bytes.length; step += step < 40 ? 1 : 17) {
    const d = new IndexDecoder('x');
    const got: IndexEntry[] = [];
    for (let i = 0; i < bytes.length; i += step) got.push(...d.push(bytes.subarray(i, i + step)));
    d.finish();
    assert.deepEqual(got, entries);
  }
});

test('a truncated log and garbage are typed errors', () => {
  const bytes = encodeEntry(firstEntry);
  const d = new IndexDecoder('x');
  assert.deepEqual(d.push(bytes.subarray(0, bytes.length - 1)), []);
  assert.throws(
    () => d.finish(),
    (e: unknown) => e instanceof HavenError && e.code === 'STORE_FILE_INVALID',
  );
  assert.throws(
    () => new IndexDecoder('x').push(Buffer.alloc(ENTRY_HEADER_BYTES, 0xff)),
    (e: unknown) => e instanceof HavenError && e.code === 'STORE_FILE_INVALID',
  );
});

test('the header is checked', () => {
  checkIndexHeader(encodeIndexHeader(), 'x');
  assert.throws(() => checkIndexHeader(Buffer.alloc(16), 'x'), /not a valid Haven store file/);
});
