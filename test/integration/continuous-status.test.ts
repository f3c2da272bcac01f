/**
 * Issue 15.6, "Visibility", without a guest: continuous lanes written to the catalog as a
 * protector writes them (one live, in every state, and one whose process is gone), then read by
 * the real `haven status` (table and --json), the real `haven serve` (/api/status, /metrics) and
 * its dashboard in Debian's Chromium. The replication itself is the continuous-* tests' subject;
 * here only what each surface makes of the records is checked, so the records come from this
 * process (alive while the test runs) and from a process that has exited.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { catalogPath, openCatalog } from '../../src/catalog/catalog.ts';
import { sampleValue } from '../../src/daemon/test-support/prometheus.ts';
import type { StatusRow } from '../../src/jobs/index.ts';
import { goneProcessPid, recordLanes } from '../../src/jobs/test-support/lanes.ts';
import { launchChromium } from '../helpers/browser.ts';
import { havenEnv, runHaven } from '../helpers/haven.ts';
import { freePort, parsePrometheus, scratchDir, startDaemon, waitFor, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-cont-status';
const MiB = 1024 * 1024;

test('continuous lanes in haven status, the API, /metrics and the dashboard', async (t) => {
  const { dir } = await scratchDir(t, PREFIX);
  const port = await freePort();
  for (const s of ['dr1', 'dr2']) await mkdir(join(dir, s));
  const config = await writeConfig(
    dir,
    `targets:
  dr1: { url: ${join(dir, 'dr1')} }
  dr2: { url: ${join(dir, 'dr2')} }
jobs:
  mirror:
    servers: ["${PREFIX}-none-*"]
    targets: [dr1, dr2]
    mode: continuous
    rpo: 30s
daemon:
  listen: 127.0.0.1:${port}
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const web = `${PREFIX}-web`;
  const db = `${PREFIX}-db`;
  const now = Date.now();
  const seed = openCatalog(catalogPath(h.stateDir));
  recordLanes(seed, web, 'mirror', [
    { target: 'dr1', state: 'syncing', lastPointAt: new Date(now - 2000) },
    { target: 'dr2', state: 'behind', lastPointAt: new Date(now - 14_000), pendingBytes: 3 * MiB },
  ]);
  const gone = goneProcessPid();
  recordLanes(
    seed,
    db,
    'mirror',
    [
      {
        target: 'dr1',
        state: 'refused',
        lastPointAt: new Date(now - 60_000),
        error: { code: 'CONTINUOUS_DR_NEWER', message: 'the server runs at the DR site' },
      },
      { target: 'dr2', state: 'syncing', lastPointAt: new Date(now - 60_000) },
    ],
    gone,
  );
  seed.close();

  await t.test('haven status --json: the lane of each pair, the stale one stopped', async () => {
    const r = await runHaven(h, ['status', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as StatusRow[];
    const lane = (server: string, target: string) =>
      rows.find((x) => x.server === server && x.target === target)?.lane;
    assert.equal(lane(web, 'dr1')?.state, 'syncing');
    assert.ok((lane(web, 'dr1')?.lagMs ?? 0) >= 2000, 'lag from the last point');
    assert.equal(lane(web, 'dr2')?.state, 'behind');
    assert.equal(lane(web, 'dr2')?.pendingBytes, 3 * MiB);
    assert.deepEqual(
      [lane(db, 'dr2')?.state, lane(db, 'dr2')?.recordedState, lane(db, 'dr2')?.stale],
      ['stopped', 'syncing', true],
    );
    assert.equal(lane(db, 'dr1')?.state, 'stopped', 'a refusal nobody retries any more');
    assert.equal(lane(db, 'dr1')?.errorCode, 'CONTINUOUS_DR_NEWER');
    assert.equal(rows.find((x) => x.server === web)?.job, 'mirror');
  });

  await t.test('haven status: the continuous column', async () => {
    const r = await runHaven(h, ['status']);
    assert.equal(r.code, 0, r.stderr);
    // Table rows are "│ server │ target │ …"; the lag moves on while the command runs.
    const line = (server: string, target: string) =>
      r.stdout.split('\n').find((l) => l.includes(`│ ${server} `) && l.includes(`│ ${target} `)) ?? r.stdout;
    assert.match(r.stdout, /│ continuous +│/);
    assert.match(line(web, 'dr1'), /syncing, lag \d+(\.\d)?s/);
    assert.match(line(web, 'dr2'), /behind (1\d|[2-9]\d)(\.\d)?s \(3\.00 MiB\)/);
    assert.match(
      line(db, 'dr1'),
      /stopped, lag \d+m\S* \[CONTINUOUS_DR_NEWER\]; protector gone \(pid \d+, was refused\)/,
    );
    assert.match(line(db, 'dr2'), /stopped, lag \d+m\S*; protector gone \(pid \d+, was syncing\)/);
  });

  startDaemon(t, h.env);
  const base = `http://127.0.0.1:${port}`;
  await waitFor('the daemon to listen', async () => (await fetch(`${base}/healthz`)).ok || undefined, 60_000);
  const token = (await readFile(join(h.stateDir, 'api-token'), 'utf8')).trim();
  const get = async (path: string) => {
    const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, path);
    return r;
  };

  await t.test('/api/status and /metrics: the same states', async () => {
    const rows = (await (await get('/api/status')).json()) as StatusRow[];
    const lane = (server: string, target: string) =>
      rows.find((x) => x.server === server && x.target === target)?.lane;
    assert.equal(lane(web, 'dr1')?.state, 'syncing');
    assert.equal(lane(web, 'dr2')?.state, 'behind');
    assert.equal(lane(db, 'dr2')?.state, 'stopped');
    assert.equal(lane(db, 'dr2')?.stale, true);
    assert.equal(typeof lane(db, 'dr2')?.updatedAt, 'string');

    const samples = parsePrometheus(await (await get('/metrics')).text());
    const state = (server: string, target: string, s: string) =>
      sampleValue(samples, 'haven_continuous_lane_state', { server, target, state: s });
    assert.equal(state(web, 'dr1', 'syncing'), 1);
    assert.equal(state(db, 'dr2', 'stopped'), 1, 'the metric does not claim a dead lane syncs');
    assert.equal(state(db, 'dr2', 'syncing'), undefined);
    assert.equal(
      sampleValue(samples, 'haven_continuous_pending_bytes', { server: web, target: 'dr2' }),
      3 * MiB,
    );
  });

  await t.test('the dashboard shows each lane’s state and lag', async () => {
    const browser = await launchChromium();
    t.after(() => browser.close());
    const page = await browser.newPage();
    await page.goto(`${base}/#token=${token}`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
    const cell = (server: string, target: string) =>
      page.locator(`#status tr[data-server="${server}"][data-target="${target}"] td.lane`);
    assert.match((await cell(web, 'dr1').textContent()) ?? '', /^syncing, lag \d+ s$/);
    assert.match((await cell(web, 'dr2').textContent()) ?? '', /^behind (1\d|[2-9]\d) s \(3(\.0+)? MiB\)$/);
    assert.match(
      (await cell(db, 'dr1').textContent()) ?? '',
      /^stopped, lag \d+ min \d+ s CONTINUOUS_DR_NEWER protector gone \(was refused\)$/,
    );
    assert.equal(await cell(db, 'dr1').getAttribute('title'), 'the server runs at the DR site');
    assert.equal(await cell(web, 'dr1').locator('.badge').getAttribute('class'), 'badge lane syncing');
    assert.equal(
      await page.getAttribute(`#status tr[data-server="${web}"] td.lane`, 'data-label'),
      'Continuous',
    );
  });
});
