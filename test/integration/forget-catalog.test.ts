/**
 * Issue 13 item 15 without a guest: pairs of servers libvirt no longer knows, seeded into the
 * catalog the way protect runs record them, then `haven forget` for one pair, a whole target and
 * a whole server, its refusals, and a running `haven serve` whose /metrics loses the forgotten
 * pairs' series and which applies the retention (runs, events, logs) when it starts.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Catalog, catalogPath, openCatalog } from '../../src/catalog/catalog.ts';
import type { ForgetResult, StatusRow } from '../../src/jobs/index.ts';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { freePort, parsePrometheus, scratchDir, waitFor, withCatalog, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-fgt';
const A = `${PREFIX}-gone-a`;
const B = `${PREFIX}-gone-b`;
const DAY = 86_400_000;

let nextCheckpoint = 0;

/** A good copy of `server` to `target` (store `storeId`), recorded as a protect run does it. */
function seedCopy(c: Catalog, server: string, target: string, storeId: string): string {
  const checkpoint = `haven-20260101T0000${String(nextCheckpoint++).padStart(2, '0')}Z-abcdef`;
  const run = c.runs.start({ kind: 'protect', job: 'manual', trigger: 'manual' });
  c.runs.recordServer(run.id, { server, target, status: 'running' });
  c.checkpoints.record({
    server,
    name: checkpoint,
    domainUuid: '6f1c5f5e-0000-4000-8000-000000000001',
    createdAt: new Date(),
    disks: ['vda'],
    xml: `<domaincheckpoint><name>${checkpoint}</name></domaincheckpoint>`,
  });
  c.inflight.set({ server, target: storeId, deltaId: `d-${checkpoint}`, checkpoint, runId: run.id });
  const generation = `g-${checkpoint}`;
  c.transaction(() => {
    c.checkpoints.markDelivered(server, checkpoint, storeId, generation);
    c.inflight.clear(server, storeId);
  });
  c.runs.recordServer(run.id, { server, target, status: 'ok', generationId: generation, copyAt: new Date() });
  c.runs.finish(run.id, { status: 'ok' });
  return checkpoint;
}

function pairsOf(rows: StatusRow[]): string[] {
  return rows.map((r) => `${r.server} ${r.target}`);
}

async function scrape(base: string, token: string): Promise<string[]> {
  const r = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  return parsePrometheus(await r.text())
    .filter((s) => s.name === 'haven_server_last_good_copy_timestamp_seconds')
    .map((s) => `${s.labels.server} ${s.labels.target}`)
    .sort();
}

test('haven forget: a server libvirt lost, a whole target, refusals; the daemon’s metrics and retention follow', async (t) => {
  const { dir, onCleanup } = await scratchDir(t, PREFIX);
  const port = await freePort();
  const config = await writeConfig(
    dir,
    `targets:\n  dr1:\n    url: ${join(dir, 'dr1')}\ndaemon:\n  listen: 127.0.0.1:${port}\n`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const logDir = h.env.HAVEN_LOG_DIR!;

  // A on dr1 and on an ad hoc path, B on dr1; A's RPO problem is open. Plus old history and logs
  // for the daemon's retention, and a recent log that must stay.
  const c = openCatalog(catalogPath(h.stateDir));
  const cpA1 = seedCopy(c, A, 'dr1', 'store-1');
  const cpA2 = seedCopy(c, A, '/srv/x', 'store-2');
  seedCopy(c, B, 'dr1', 'store-1');
  c.events.append({
    type: 'rpo.breached',
    severity: 'error',
    message: 'old copy',
    server: A,
    target: 'dr1',
    dedupKey: `rpo:${A}:dr1`,
  });
  const oldRun = c.runs.start({ kind: 'verify', trigger: 'manual', at: new Date(Date.now() - 100 * DAY) });
  c.runs.finish(oldRun.id, { status: 'ok', at: new Date(Date.now() - 100 * DAY) });
  const oldEvent = c.events.append({
    type: 'run.started',
    severity: 'info',
    message: 'long ago',
    at: new Date(Date.now() - 100 * DAY),
  });
  c.close();
  await mkdir(logDir, { recursive: true });
  const stamp = (d: Date) => d.toISOString().replace(/[:.]/g, '-');
  const dead = spawnSync(process.execPath, ['-e', '']).pid;
  const oldLog = join(logDir, `receive-${stamp(new Date(Date.now() - 40 * DAY))}-${dead}.log`);
  const newLog = join(logDir, `receive-${stamp(new Date())}-${dead}.log`);
  await writeFile(oldLog, 'old\n');
  await writeFile(newLog, 'new\n');
  await utimes(oldLog, new Date(Date.now() - 40 * DAY), new Date(Date.now() - 40 * DAY));

  const daemon: ChildProcess = spawn(process.execPath, [HAVEN_BIN, 'serve'], {
    env: h.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((resolve) => daemon.once('exit', resolve));
  onCleanup(async () => {
    if (daemon.exitCode === null) daemon.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor('the daemon to listen', async () => (await fetch(`${base}/healthz`)).ok || undefined);
  const token = (await readFile(join(h.stateDir, 'api-token'), 'utf8')).trim();

  await t.test('the daemon applies the retention when it starts', async () => {
    await waitFor('old runs, events and logs to go', () =>
      withCatalog(h.stateDir, (cat) => !cat.runs.get(oldRun.id) && !cat.events.get(oldEvent.id)) &&
      !existsSync(oldLog)
        ? true
        : undefined,
    );
    assert.ok(existsSync(newLog), 'a recent log stays');
    withCatalog(h.stateDir, (cat) =>
      assert.equal(cat.status.list().length, 3, 'status rows are not history'),
    );
  });

  assert.deepEqual(await scrape(base, token), [`${A} /srv/x`, `${A} dr1`, `${B} dr1`]);

  await t.test('a dry run shows the plan and changes nothing', async () => {
    const plan = await havenJson<ForgetResult>(h, ['forget', A, '--target', 'dr1', '--dry-run']);
    assert.equal(plan.dryRun, true);
    assert.deepEqual(
      plan.pairs.map((p) => [p.server, p.target, p.stores, p.nextCopy]),
      [[A, 'dr1', ['store-1'], 'resync']],
    );
    assert.equal(plan.servers[0]?.domain, 'absent');
    assert.deepEqual(plan.servers[0]?.checkpoints, [cpA1]);
    assert.deepEqual(plan.servers[0]?.keptCheckpoints, [cpA2]);
    assert.equal(plan.servers[0]?.result, null);
    assert.deepEqual(plan.servers[0]?.removed, {
      status: 1,
      inflight: 0,
      deliveries: 1,
      mappings: 1,
      problems: 1,
    });
    withCatalog(h.stateDir, (cat) => {
      assert.equal(cat.status.list().length, 3);
      assert.ok(cat.checkpoints.get(A, cpA1));
      assert.ok(cat.events.openProblem(`rpo:${A}:dr1`));
    });
  });

  await t.test('one pair of a server libvirt no longer knows', async () => {
    const r = await havenJson<ForgetResult>(h, ['forget', A, '--target', 'dr1']);
    assert.equal(r.storesUntouched, true);
    assert.deepEqual(r.servers[0]?.result, { deleted: [], missing: [cpA1], failed: [] });
    const status = await havenJson<StatusRow[]>(h, ['status']);
    assert.deepEqual(pairsOf(status), [`${A} /srv/x`, `${B} dr1`]);
    withCatalog(h.stateDir, (cat) => {
      assert.equal(cat.checkpoints.get(A, cpA1), undefined);
      assert.ok(cat.checkpoints.get(A, cpA2), 'the other target’s checkpoint stays');
      assert.equal(cat.checkpoints.lastDelivered(A, 'store-1'), undefined);
      assert.ok(cat.checkpoints.lastDelivered(B, 'store-1'), 'B’s copies to the same store stay');
      assert.equal(cat.events.openProblem(`rpo:${A}:dr1`), undefined);
      assert.equal(cat.events.list({ type: 'pair.forgotten' })[0]?.target, 'dr1');
    });
    // The running daemon's next scrape no longer has the pair.
    assert.deepEqual(await scrape(base, token), [`${A} /srv/x`, `${B} dr1`]);
    const again = await runHaven(h, ['forget', A, '--target', 'dr1']);
    assert.equal(again.code, 4);
    assert.match(again.stderr, /\[FORGET_NOT_FOUND\]/);
  });

  await t.test('refusals: unclear scope, and a run that is copying the pair', async () => {
    const vague = await runHaven(h, ['forget', A]);
    assert.equal(vague.code, 2);
    assert.match(vague.stderr, /--all-targets/);
    // A run of this (live) process is copying B to /srv/y.
    const cat = openCatalog(catalogPath(h.stateDir));
    const run = cat.runs.start({ kind: 'protect', trigger: 'manual' });
    cat.runs.recordServer(run.id, { server: B, target: '/srv/y', status: 'running' });
    cat.close();
    const busy = await runHaven(h, ['forget', B, '--target', '/srv/y', '--json']);
    assert.equal(busy.code, 7);
    assert.equal(
      (JSON.parse(busy.stdout) as { error: { code: string } }).error.code,
      'FORGET_RUN_IN_PROGRESS',
    );
    assert.match(busy.stderr, new RegExp(`haven runs ${run.id}`));
    withCatalog(h.stateDir, (x) => assert.equal(x.runs.get(run.id)?.status, 'running'));
    const done = openCatalog(catalogPath(h.stateDir));
    done.runs.recordServer(run.id, { server: B, target: '/srv/y', status: 'failed' });
    done.runs.finish(run.id, { status: 'failed' });
    done.close();
  });

  await t.test('a whole target, then everything of a server', async () => {
    const r = await havenJson<ForgetResult>(h, ['forget', '--target', 'dr1', '--all-servers']);
    assert.deepEqual(
      r.pairs.map((p) => `${p.server} ${p.target}`),
      [`${B} dr1`],
    );
    const all = await havenJson<ForgetResult>(h, ['forget', A, '--all-targets']);
    assert.deepEqual(
      all.pairs.map((p) => p.target),
      ['/srv/x'],
    );
    assert.deepEqual(all.servers[0]?.result?.missing, [cpA2]);
    const forgetB = await havenJson<ForgetResult>(h, ['forget', B, '--all-targets']);
    assert.deepEqual(
      forgetB.pairs.map((p) => p.target),
      ['/srv/y'],
    );
    assert.deepEqual(await havenJson<StatusRow[]>(h, ['status']), []);
    withCatalog(h.stateDir, (cat) => {
      assert.deepEqual(cat.checkpoints.list(), []);
      assert.deepEqual(cat.targetStores.list(), []);
    });
    assert.deepEqual(await scrape(base, token), []);
  });
});
