import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clearTextExposure, isLoopbackHost } from './exposure.ts';

test('loopback addresses and names', () => {
  for (const h of [
    '127.0.0.1',
    '127.1.2.3',
    '::1',
    '[::1]',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    'localhost',
    'LOCALHOST',
  ])
    assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '[::]', '10.0.0.1', '::ffff:10.0.0.1', 'fe80::1', 'dr-host', '128.0.0.1'])
    assert.ok(!isLoopbackHost(h), h);
});

test('plain HTTP reachable from other hosts is a warning unless a TLS proxy is declared', () => {
  assert.equal(clearTextExposure('127.0.0.1', 8470, []), null);
  assert.equal(clearTextExposure('0.0.0.0', 8470, ['10.0.0.5']), null);
  assert.match(
    clearTextExposure('0.0.0.0', 8470, []) ?? '',
    /listens on 0\.0\.0\.0:8470, which other hosts can reach/,
  );
  assert.match(clearTextExposure('::', 8470, []) ?? '', /listens on \[::\]:8470/);
});
