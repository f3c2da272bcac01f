import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import type { HavenError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { lockServer } from './server-lock.ts';

test('a server is held by one run at a time; the second is told who holds it', async () => {
  const server = { name: 'web01', uuid: randomUUID() };
  const first = await lockServer(server, { target: '/srv/dr1', job: 'nightly', runId: 7 }, silentLogger);
  await assert.rejects(lockServer(server, { target: '/srv/dr2' }, silentLogger), (e: HavenError) => {
    assert.equal(e.code, 'ENGINE_SERVER_BUSY');
    assert.equal(e.kind, 'conflict');
    assert.match(
      e.message,
      new RegExp(
        `web01 is being replicated by another run \\(pid ${process.pid}, job nightly run #7, to /srv/dr1, since `,
      ),
    );
    assert.deepEqual(e.details?.holder && { ...(e.details.holder as object), since: 'x' }, {
      pid: process.pid,
      since: 'x',
      target: '/srv/dr1',
      job: 'nightly',
      runId: 7,
    });
    return true;
  });
  // Another server is not affected.
  const other = await lockServer({ name: 'web02', uuid: randomUUID() }, { target: '/srv/dr1' }, silentLogger);
  await other.release();
  await first.release();
  const again = await lockServer(server, { target: '/srv/dr2' }, silentLogger);
  await again.release();
});
