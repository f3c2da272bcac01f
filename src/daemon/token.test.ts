import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { HavenError } from '../core/errors.ts';
import { scratchDir } from '../core/test-support/scratch.ts';
import { authorized, ensureToken } from './token.ts';

const dir = (t: TestContext): string => scratchDir('haven-t-daemon-token-', t);

test('the token is created once, 0600, and read back afterwards', async (t) => {
  const state = join(dir(t), 'state');
  const first = await ensureToken(state);
  assert.equal(first.created, true);
  assert.match(first.token, /^[0-9a-f]{64}$/);
  assert.equal(statSync(first.path).mode & 0o777, 0o600);
  assert.equal(readFileSync(first.path, 'utf8'), `${first.token}\n`);
  const again = await ensureToken(state);
  assert.deepEqual([again.created, again.token], [false, first.token]);
  chmodSync(first.path, 0o644);
  await ensureToken(state);
  assert.equal(statSync(first.path).mode & 0o777, 0o600, 'a loosened file is tightened');
  writeFileSync(first.path, 'short\n');
  await assert.rejects(
    ensureToken(state),
    (e: unknown) => e instanceof HavenError && e.code === 'API_TOKEN_INVALID',
  );
});

test('authorization header check', () => {
  const token = 'a'.repeat(64);
  assert.equal(authorized(`Bearer ${token}`, token), true);
  assert.equal(authorized(`bearer  ${token} `, token), true);
  assert.equal(authorized(undefined, token), false);
  assert.equal(authorized(token, token), false);
  assert.equal(authorized(`Bearer ${token}x`, token), false);
  assert.equal(authorized(`Basic ${token}`, token), false);
  assert.equal(authorized('Bearer ', token), false);
});
