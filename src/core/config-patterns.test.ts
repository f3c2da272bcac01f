import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  globToRegExp,
  isLiteralServer,
  parseServerPattern,
  selectServers,
  selectsSomething,
} from './config-patterns.ts';
import { ValueProblem } from './config-values.ts';

const NAMES = ['web01', 'web02', 'db01', 'test-web', 'test-db', 'app.1', 'Web03'];

test('names and globs select servers, in the order of the name list', () => {
  assert.deepEqual(selectServers(['web01'], NAMES), ['web01']);
  assert.deepEqual(selectServers(['web*'], NAMES), ['web01', 'web02'], 'case-sensitive');
  assert.deepEqual(selectServers(['db01', 'web0?'], NAMES), ['web01', 'web02', 'db01']);
  assert.deepEqual(selectServers(['*'], NAMES), NAMES);
  assert.deepEqual(selectServers(['[wd]*01'], NAMES), ['web01', 'db01']);
  assert.deepEqual(selectServers(['web0[!1]'], NAMES), ['web02']);
  assert.deepEqual(selectServers(['app.?'], NAMES), ['app.1']);
  assert.deepEqual(selectServers(['app?1'], NAMES), ['app.1']);
  assert.deepEqual(selectServers(['app.1'], ['appX1']), [], 'a dot is literal');
  assert.deepEqual(selectServers(['nosuch'], NAMES), []);
});

test('"!" patterns remove what earlier patterns selected', () => {
  assert.deepEqual(selectServers(['*', '!test-*'], NAMES), ['web01', 'web02', 'db01', 'app.1', 'Web03']);
  assert.deepEqual(selectServers(['*', '!test-*', 'test-db'], NAMES), [
    'web01',
    'web02',
    'db01',
    'test-db',
    'app.1',
    'Web03',
  ]);
  assert.equal(selectsSomething(['!a']), false);
  assert.equal(selectsSomething(['!a', 'b']), true);
});

test('pattern syntax is checked', () => {
  for (const ok of ['web01', 'web*', '!test-*', '[a-c]x', '[!a]?', 'a+b_c.d-e']) {
    assert.equal(parseServerPattern(ok), ok);
  }
  for (const bad of [
    '',
    '!',
    'a/b',
    'a b',
    '[abc',
    'a]',
    '[]',
    'a!b',
    '..',
    '../x',
    5,
    null,
    '-x',
    '.hidden',
  ]) {
    assert.throws(() => parseServerPattern(bad), ValueProblem, String(bad));
  }
});

test('literal names and compiled globs', () => {
  assert.equal(isLiteralServer('web01'), true);
  assert.equal(isLiteralServer('web*'), false);
  assert.equal(isLiteralServer('!web'), false);
  assert.equal(globToRegExp('a*b?[x-z]').source, '^a.*b.[x-z]$');
});
