import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from './errors.ts';
import { checkName, isSafeName } from './names.ts';

test('names that are safe in a path and as an LV name pass', () => {
  for (const ok of ['Web01', 'web01_0', 'db-1.prod', 'a+b', '_x', 'x'.repeat(100)]) {
    assert.equal(checkName('server', ok), ok);
  }
});

test('names that could escape the store or break LVM are refused with BAD_NAME', () => {
  for (const bad of [
    '',
    '.',
    '..',
    '../etc',
    'a/b',
    '/abs',
    '.hidden',
    '-opt',
    'a b',
    'a\0b',
    'x'.repeat(101),
    'a..b',
    'é',
  ]) {
    assert.equal(isSafeName(bad), false, bad);
    assert.throws(
      () => checkName('disk', bad),
      (e: unknown) => e instanceof HavenError && e.code === 'BAD_NAME' && e.kind === 'usage',
    );
  }
});
