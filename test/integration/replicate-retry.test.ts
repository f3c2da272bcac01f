/**
 * Issue 13, item 9: the sender retries exactly what can succeed on retry. A receiver killed in
 * the middle of its commit (HAVEN_STORE_CRASH_AT, src/store/crash.ts) is reconnected to, and the
 * new receiver's QUERY completes the commit, so the run succeeds without sending again; when every
 * receiver dies, the run gives up after `--retries` reconnections and says how many attempts it
 * made. A target without Haven (ssh exit 127) is not retried at all, and a job's `retries: 0`
 * means no reconnection either.
 *
 * Crash injection reaches only the first receiver of a run through a preload
 * (test/fixtures/faults/crash-first-receiver.mjs) that sets HAVEN_STORE_CRASH_AT in that one
 * process: the variable itself is inherited by every receiver a run starts.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { ServerResult } from '../../src/catalog/catalog.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { startSshd } from '../helpers/sshd.ts';
import { withCatalog, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-retry';
const PRELOAD = pathToFileURL(join(import.meta.dirname, '../fixtures/faults/crash-first-receiver.mjs')).href;
const COMMIT_STEPS = ['mid-apply', 'after-apply', 'after-manifest', 'after-final-rename'] as const;

interface ErrorJson {
  error: { code: string; kind: string; message: string; details?: Record<string, unknown> };
}

test('a receiver killed at a commit step: the run reconnects, finds the commit done, and succeeds', async (t) => {
  const dir = await testDir(t, `${PREFIX}-once`);
  const marker = join(dir, 'crash-once');
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const model = await DiskModel.create(join(dir, 'model.raw'), guest.disks[0]!.sizeBytes);
  const image = join(store, `${guest.name}_${guest.disks[0]!.storeName}_1.raw`);
  const protect = ['protect', guest.name, '--to', store, '--copies', '2', '--retries', '3'];
  const h = await havenEnv(dir);
  await guest.writePattern('vda', 1, 16);
  await model.writePattern(1, 16);
  await havenJson(h, protect);

  for (const [i, step] of COMMIT_STEPS.entries()) {
    const faulty = await havenEnv(dir, {
      NODE_OPTIONS: `--import=${PRELOAD}`,
      HAVEN_TEST_CRASH_ONCE: marker,
      HAVEN_TEST_CRASH_STEP: step,
    });
    await guest.writePattern('vda', 10 + i, 16);
    await model.writePattern(10 + i, 16);
    await writeFile(marker, '');
    const r = await havenJson<ProtectResult>(faulty, protect);
    await assert.rejects(readFile(marker), 'the first receiver took the crash');
    assert.equal(r.attempts, 2, `${step}: one broken attempt, one that found the commit`);
    assert.equal(r.attemptLog[0]!.error, 'TRANSPORT_CHILD_FAILED', `${step}: the receiver died`);
    assert.equal(r.attemptLog[1]!.sentBytes, 0, `${step}: nothing sent again`);
    assert.equal(r.generation.pointInTime, r.pointInTime, `${step}: the committed generation is this run’s`);
    assert.equal(await firstDifference(image, model.path), -1, `${step}: the newest generation is right`);
  }
  const v = await havenJson<{ ok: boolean }>(h, ['verify', '--store', store]);
  assert.equal(v.ok, true);
});

test('every receiver dies at commit: reconnected --retries times, and the error says how often', async (t) => {
  const dir = await testDir(t, `${PREFIX}-always`);
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const h = await havenEnv(dir);
  await guest.writePattern('vda', 2, 16);
  await havenJson(h, ['protect', guest.name, '--to', store, '--copies', '2']);
  await guest.writePattern('vda', 3, 16);

  const faulty = await havenEnv(dir, { HAVEN_STORE_CRASH_AT: 'after-manifest' });
  const r = await runHaven(faulty, ['protect', guest.name, '--to', store, '--retries', '2', '--json']);
  assert.equal(r.code, 5, `exit 5 (unavailable): ${r.stderr}`);
  const { error } = JSON.parse(r.stdout) as ErrorJson;
  assert.equal(error.code, 'TRANSPORT_CHILD_FAILED');
  assert.equal(error.details?.attempts, 3, 'the first attempt and two reconnections');
  assert.match(error.message, /gave up after 3 attempts/);
  assert.equal(r.stderr.match(/the connection to the target broke; resuming/g)?.length, 2, r.stderr);

  // Whatever the sender gave up on, the next run finds the commit completed.
  const next = await havenJson<ProtectResult>(h, ['protect', guest.name, '--to', store, '--copies', '2']);
  const v = await havenJson<{ ok: boolean }>(h, ['verify', '--store', store]);
  assert.equal(v.ok, true);
  assert.equal(next.generation.seq, 1);
});

test('a target without haven (ssh exit 127) is not retried', async (t) => {
  const dir = await testDir(t, `${PREFIX}-missing`);
  await mkdir(join(dir, 'ssh'));
  const sshd = await startSshd(join(dir, 'ssh'), { logDir: join(dir, 'remote-logs') });
  t.after(() => sshd.stop());
  const h = await havenEnv(dir);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] });
  const started = Date.now();
  const r = await runHaven(h, [
    'protect',
    guest.name,
    '--to',
    sshd.url(join(dir, 'store')),
    '--retries',
    '3',
    '--remote-command',
    join(dir, 'no-such-haven'),
    ...sshd.sshOptions.map((o) => `--ssh-option=${o}`),
    '--json',
  ]);
  assert.equal(r.code, 5, `exit 5 (unavailable): ${r.stderr}`);
  const { error } = JSON.parse(r.stdout) as ErrorJson;
  assert.equal(error.code, 'TRANSPORT_REMOTE_COMMAND_MISSING');
  assert.equal(error.details?.attempts, undefined, 'one attempt');
  assert.doesNotMatch(r.stderr, /trying again/);
  // Three reconnections would have waited 1 + 2 + 4 s.
  assert.ok(Date.now() - started < 7000, `gave up at once (${Date.now() - started} ms)`);
});

test('a job with retries: 0 tries a copy once, without reconnecting', async (t) => {
  const dir = await testDir(t, `${PREFIX}-job`);
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] });
  const config = await writeConfig(
    dir,
    `targets:\n  dr:\n    url: ${store}\njobs:\n  once:\n    servers: [${guest.name}]\n    target: dr\n    retries: 0\n`,
  );
  // Every receiver dies as it starts: a failure reconnecting could only repeat.
  const h = await havenEnv(dir, { HAVEN_CONFIG: config, HAVEN_TEST_FAULT: 'receiver-at-start' });
  const r = await runHaven(h, ['job', 'run', 'once', '--json']);
  assert.equal(r.code, 5, `exit 5 (unavailable): ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /trying again|resuming/);
  const rows = withCatalog(h.stateDir, (c) =>
    c.runs.list({ kind: 'job', limit: 1 }).map((x) => c.runs.get(x.id)!),
  );
  const servers: ServerResult[] = rows[0]!.servers;
  assert.equal(servers[0]?.attempts, 1);
  assert.equal(servers[0]?.errorCode, 'TRANSPORT_CHILD_FAILED');
  const logs = await readdir(join(dir, 'log'));
  const jobLog = await readFile(join(dir, 'log', logs.find((f) => f.startsWith('job-once-'))!), 'utf8');
  assert.doesNotMatch(jobLog, /trying again|resuming/, 'the log shows no reconnection');
});
