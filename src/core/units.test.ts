import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from './errors.ts';
import { formatBytes, formatDuration, parseDuration, parseRate, parseSize } from './units.ts';

test('sizes: IEC, SI, single letters and bare bytes', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('512KiB'), 512 * 1024);
  assert.equal(parseSize('50MiB'), 50 * 1024 ** 2);
  assert.equal(parseSize('2G'), 2 * 1024 ** 3);
  assert.equal(parseSize('1.5GB'), 1.5e9);
  assert.equal(parseSize(' 1 TiB '), 1024 ** 4);
  assert.equal(parseSize(7), 7);
});

test('sizes: garbage is a BAD_SIZE usage error', () => {
  for (const bad of ['', 'MiB', '5 parsecs', '-1G', '1e3', '2..0G']) {
    assert.throws(
      () => parseSize(bad),
      (e: unknown) => e instanceof HavenError && e.code === 'BAD_SIZE' && e.kind === 'usage',
      bad,
    );
  }
  assert.throws(() => parseSize(-4), /invalid size/);
});

test('rates accept /s and plain sizes', () => {
  assert.equal(parseRate('50MiB/s'), 50 * 1024 ** 2);
  assert.equal(parseRate('10MB/sec'), 10e6);
  assert.equal(parseRate('0'), 0);
  assert.throws(
    () => parseRate('fast'),
    (e: unknown) => e instanceof HavenError && e.code === 'BAD_RATE',
  );
});

test('durations: groups of number+unit', () => {
  assert.equal(parseDuration('26h'), 26 * 3_600_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('1d12h'), 36 * 3_600_000);
  assert.equal(parseDuration('1h 30m'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('90'), 90_000);
  for (const bad of ['', 'soon', '5y', '10 m x', 'h']) {
    assert.throws(
      () => parseDuration(bad),
      (e: unknown) => e instanceof HavenError && e.code === 'BAD_DURATION',
      bad,
    );
  }
});

test('formatting', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(2 * 1024 ** 3), '2.00 GiB');
  assert.equal(formatDuration(4500), '4.5s');
  assert.equal(formatDuration(93_784_000), '1d2h3m');
  assert.equal(formatDuration(3_660_000), '1h1m');
  assert.equal(formatDuration(61_000), '1m1s');
});
