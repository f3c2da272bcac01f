import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileFollower, TextMatcher } from './marker.ts';

test('a marker split across pieces is found; one that never came is not', () => {
  const m = new TextMatcher('login:');
  assert.equal(m.push('Debian GNU/Linux 12 web01 ttyS0\nweb01 log'), false);
  assert.equal(m.push('in'), false);
  assert.equal(m.push(': '), true);
  const n = new TextMatcher('HAVEN pattern-verify OK');
  assert.equal(n.push('HAVEN pattern-verify BAD disk=vda'), false);
  assert.equal(n.push(''), false);
});

test('the follower hands over only what was appended, and keeps a short tail', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-follow-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'console.log');
  const f = new FileFollower(file);
  const seen: string[] = [];
  await f.read((p) => seen.push(p));
  assert.equal(seen.length, 0, 'a file that does not exist yet is simply empty');
  await appendFile(file, 'one\n');
  await f.read((p) => seen.push(p));
  await appendFile(file, `two\n${'x'.repeat(200_000)}\nthree\n`);
  await f.read((p) => seen.push(p));
  assert.equal(seen.join(''), `one\ntwo\n${'x'.repeat(200_000)}\nthree\n`);
  assert.ok(f.tail.length <= 4096);
  assert.ok(f.tail.endsWith('\nthree\n'));
});
