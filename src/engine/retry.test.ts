import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ErrorKind, type HavenCode, HavenError, InterruptedError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { canReconnect, canRetryLater, isFinal, withReconnects } from './retry.ts';

const err = (
  code: HavenCode,
  kind: ErrorKind,
  o: { details?: Record<string, unknown>; cause?: unknown } = {},
) => new HavenError(code, `${code} happened`, { kind, ...o });

test('what no attempt changes is final at both levels', () => {
  for (const e of [
    err('TRANSPORT_REMOTE_COMMAND_MISSING', 'unavailable'),
    err('TRANSPORT_CHILD_FAILED', 'unavailable', {
      cause: Object.assign(new Error('x'), { code: 'ENOENT' }),
    }),
    err('TRANSPORT_SSH_FAILED', 'unavailable', {
      details: { stderr: 'root@dr1: Permission denied (publickey).' },
    }),
    err('TRANSPORT_SSH_FAILED', 'unavailable', { details: { stderr: 'Host key verification failed.' } }),
    err('PROTO_VERSION', 'protocol'),
    err('PROTO_AUTH_FAILED', 'refused'),
    err('STORE_ACTIVE_AT_DR', 'refused'),
    err('TARGET_NOT_FOUND', 'not-found'),
    new InterruptedError(),
  ]) {
    assert.equal(isFinal(e), true, e.code);
    assert.equal(canReconnect(e), false, e.code);
    assert.equal(canRetryLater(e), false, e.code);
  }
});

test('a broken connection is reconnected; the source’s failures and lasting conditions wait for the job', () => {
  for (const e of [
    err('TRANSPORT_CHILD_FAILED', 'unavailable', { details: { signal: 'SIGKILL' } }),
    err('TRANSPORT_SSH_FAILED', 'unavailable', {
      details: { stderr: 'connect to host dr1 port 22: No route to host' },
    }),
    err('PROTO_CONNECTION_LOST', 'unavailable'),
    err('PROTO_TRUNCATED', 'protocol'),
    err('STORE_LOCKED', 'conflict'),
  ]) {
    assert.equal(canReconnect(e), true, e.code);
    assert.equal(canRetryLater(e), true, e.code);
  }
  for (const e of [
    err('NBD_TIMEOUT', 'unavailable'),
    err('VIRT_BACKUP_ACTIVE', 'conflict'),
    err('ENGINE_SERVER_BUSY', 'conflict'),
    err('NO_SPACE', 'resource'),
  ]) {
    assert.equal(canReconnect(e), false, e.code);
    assert.equal(canRetryLater(e), true, e.code);
  }
});

test('withReconnects: tries retries + 1 times, doubling the wait, and says how often it tried', async () => {
  const waits: number[] = [];
  let last = Date.now();
  let calls = 0;
  const cleaned: number[] = [];
  await assert.rejects(
    withReconnects(
      { retries: 2, backoffMs: 20, log: silentLogger },
      'broke',
      async () => {
        calls++;
        waits.push(Date.now() - last);
        last = Date.now();
        throw err('PROTO_CONNECTION_LOST', 'unavailable');
      },
      async (_e, n) => {
        cleaned.push(n);
      },
    ),
    (e: HavenError) => {
      assert.equal(e.code, 'PROTO_CONNECTION_LOST');
      assert.equal(e.kind, 'unavailable');
      assert.equal(e.details?.attempts, 3);
      assert.match(e.message, /gave up after 3 attempts/);
      return true;
    },
  );
  assert.equal(calls, 3);
  assert.deepEqual(cleaned, [1, 2, 3]);
  assert.ok(waits[1]! >= 18 && waits[2]! >= 38, `waits ${waits.join(', ')}`);

  calls = 0;
  const final = err('TRANSPORT_REMOTE_COMMAND_MISSING', 'unavailable');
  await assert.rejects(
    withReconnects({ retries: 5, backoffMs: 1, log: silentLogger }, 'broke', async () => {
      calls++;
      throw final;
    }),
    (e) => e === final,
  );
  assert.equal(calls, 1, 'a final failure is not tried again, and comes out as it was');

  assert.equal(
    await withReconnects({ retries: 1, backoffMs: 1, log: silentLogger }, 'broke', async (n) => {
      if (n === 1) throw err('STORE_LOCKED', 'conflict');
      return n;
    }),
    2,
  );
});

test('withReconnects: a stop while waiting ends with the signal’s reason', async () => {
  const abort = new AbortController();
  const stopped = new InterruptedError('protect web01 stopped by SIGINT');
  setTimeout(() => abort.abort(stopped), 20);
  await assert.rejects(
    withReconnects(
      { retries: 3, backoffMs: 10_000, signal: abort.signal, log: silentLogger },
      'broke',
      async () => {
        throw err('PROTO_CONNECTION_LOST', 'unavailable');
      },
    ),
    (e) => e === stopped,
  );
});
