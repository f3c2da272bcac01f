import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rowReader } from './db.ts';

test('rowReader: camelCase keys, dates and JSON converted, NULL and unselected columns are null', () => {
  const read = rowReader<Record<string, unknown>>('server store_id seen_at:date record:json last_at:date');
  const r = read({
    server: 'web01',
    store_id: 's1',
    seen_at: 1000,
    record: '{"a":[1]}',
    last_at: null,
    extra: 1,
  });
  assert.deepEqual(r, {
    server: 'web01',
    storeId: 's1',
    seenAt: new Date(1000),
    record: { a: [1] },
    lastAt: null,
  });
  assert.deepEqual(rowReader<Record<string, unknown>>('pid')({}), { pid: null });
  const flags = rowReader<Record<string, unknown>>('a:bool b:bool c:bool');
  assert.deepEqual(flags({ a: 1, b: 0, c: null }), { a: true, b: false, c: null });
});

test('rowReader: an unknown column type is refused when the reader is declared', () => {
  assert.throws(() => rowReader('seen_at:dat'), /unknown type/);
});
