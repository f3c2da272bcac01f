/// <reference lib="dom" />
// (the functions passed to page.evaluate run in the browser)
/**
 * The dashboard `haven serve` serves at `/`, used as a person would in a real browser: Debian's
 * Chromium driven by playwright-core, against the real daemon in a child process, with one real
 * protected guest copied twice, a drill that passes and one that fails. The page's content is built
 * by its script from the API, so each check compares what the page shows (the tables, the tiles,
 * each chart's data read back from its uPlot instance, the restore points) with what the API
 * holds. Clicks: typing the token, Run now, Cancel (confirming the dialog), Forget token. At phone
 * width (420 px) nothing scrolls sideways. Times are in Haven's one style on the page and in the
 * CLI, in the same zone (the configuration's, which the browser is given too).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { Run, ServerResult } from '../../src/catalog/catalog.ts';
import { formatLocalTime } from '../../src/core/time-format.ts';
import type { HistoryView, Summary } from '../../src/daemon/history.ts';
import type { PairRestorePoints } from '../../src/daemon/restore-points.ts';
import { promtoolCheckMetrics } from '../../src/daemon/test-support/prometheus.ts';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { launchChromium } from '../helpers/browser.ts';
import { havenEnv, runHaven } from '../helpers/haven.ts';
import { freePort, scratchDir, waitFor, writeConfig } from './jobs-helpers.ts';
import { guestDefinitions } from './recovery-helpers.ts';

const PREFIX = 'haven-t-ui';
const ZONE = 'Europe/Berlin';

type RunView = Run & { servers: ServerResult[] };
type Points = Array<[number, number]>;
interface ChartSeries {
  label: string;
  points: Points;
}

/** A request with the path exactly as written (fetch would normalise `//` and `..`). */
function rawGet(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Each chart's series as its uPlot instance holds them: the points where a value is present. */
function chartsOnPage(page: Page): Promise<Record<string, ChartSeries[]>> {
  return page.evaluate(() => {
    const out: Record<string, Array<{ label: string; points: Array<[number, number]> }>> = {};
    for (const el of Array.from(document.querySelectorAll<HTMLElement>('[data-chart]'))) {
      const chart = (el as HTMLElement & { chart?: { data: number[][]; series: Array<{ label: string }> } })
        .chart;
      out[el.dataset.chart!] = chart
        ? chart.series.slice(1).map((s, i) => ({
            label: s.label,
            points: chart.data[0]!.flatMap((x, j) => {
              const y = chart.data[i + 1]![j];
              return typeof y === 'number' ? [[x, y] as [number, number]] : [];
            }),
          }))
        : [];
    }
    return out;
  });
}

/** What each chart must show, from GET /api/history (docs/daemon.md "Dashboard"). */
function expectedCharts(h: HistoryView): Record<string, ChartSeries[]> {
  const pair = (x: { server: string; target: string }) => `${x.server} → ${x.target}`;
  const runs = (field: 'bytesSent' | 'durationSeconds' | 'throughput') =>
    h.runs.map((r) => ({
      label: pair(r),
      points: r.points.flatMap((p) => (p[field] === null ? [] : [[p.at, p[field]] as [number, number]])),
    }));
  const from = Date.parse(h.from) / 1000;
  const to = Date.parse(h.to) / 1000;
  return {
    age: [
      ...h.rpo.map((r) => ({ label: pair(r), points: r.points })),
      ...h.rpo.flatMap((r) =>
        r.objectiveSeconds === null
          ? []
          : [
              {
                label: `objective ${r.job}`,
                points: [
                  [from, r.objectiveSeconds],
                  [to, r.objectiveSeconds],
                ] as Points,
              },
            ],
      ),
    ],
    bytes: runs('bytesSent'),
    duration: runs('durationSeconds'),
    throughput: runs('throughput'),
    drills: [
      ...h.drills.map((d) => ({
        label: `${d.server} → ${d.store}`,
        points: d.points.flatMap((p) =>
          p.result === 'pass' ? [[p.at, p.recoverySeconds!] as [number, number]] : [],
        ),
      })),
      {
        label: 'failed drills',
        points: h.drills.flatMap((d) =>
          d.points.flatMap((p) =>
            p.result === 'fail' ? [[p.at, p.recoverySeconds ?? 0] as [number, number]] : [],
          ),
        ),
      },
    ],
    capacity: h.capacity.flatMap((c) => [
      { label: `${c.target} used`, points: c.points.map((p) => [p.at, p.usedBytes] as [number, number]) },
      { label: `${c.target} size`, points: c.points.map((p) => [p.at, p.totalBytes] as [number, number]) },
    ]),
  };
}

/**
 * The page and the test read the history at different moments: the window's ends (where the
 * objective lines start and end) and "now" (where each age series ends, its value growing with
 * the clock) are named rather than compared as numbers; everything recorded must be the same.
 */
function comparable(series: ChartSeries[], from: number, to: number) {
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return series
    .filter((s) => s.points.length > 0)
    .map((s) => ({
      label: s.label,
      points: s.points
        .map(([x, y]) => {
          const at = Math.abs(x - to) < 0.01 ? 'to' : Math.abs(x - from) < 0.01 ? 'from' : round(x);
          const value = at === 'to' && !s.label.startsWith('objective') ? 'now' : round(y);
          return [at, value];
        })
        .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    }))
    .sort((a, b) => (a.label < b.label ? -1 : 1));
}

test('haven serve: the dashboard in Debian’s Chromium, clicked through', async (t) => {
  const { dir, onCleanup } = await scratchDir(t, PREFIX);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  await guest.writePattern('vda', 1, 16);
  const port = await freePort();
  const store = join(dir, 'store');
  // An objective of one second is breached as soon as the copy is made: a failing tile, the red
  // mark and an open problem to show. The bandwidth limit keeps a later copy running long enough
  // to watch it and cancel it.
  const config = await writeConfig(
    dir,
    `timezone: ${ZONE}
targets:
  dr:
    url: ${store}
    bandwidth: 1MiB/s
jobs:
  nightly:
    servers: [${guest.name}]
    target: dr
    schedule: "0 3 * * *"
    rpo: 1s
drills:
  boots:
    store: ${store}
    servers: ["${guest.name}"]
    boot_marker: { serial: "HAVEN ready" }
    # A guest under TCG boots in seconds, but a test host shared by many can make it minutes.
    # Its kernel boots only from a directory the DR host allows (guestDefinitions below).
    timeout: 10m
  never:
    store: ${store}
    servers: ["${guest.name}"]
    boot_marker: { serial: "HAVEN this line never comes" }
    timeout: 10s
daemon:
  listen: 127.0.0.1:${port}
${guestDefinitions(guest)}`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  for (const seed of [1, 2]) {
    if (seed === 2) await guest.writePattern('vda', 2, 8);
    const r = await runHaven(h, ['job', 'run', 'nightly'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `haven job run: ${r.stderr}`);
  }
  const passed = await runHaven(h, ['drill', '--drill', 'boots'], { timeoutMs: 900_000 });
  assert.equal(passed.code, 0, `the drill that boots: ${passed.stderr}`);
  const failed = await runHaven(h, ['drill', '--drill', 'never'], { timeoutMs: 300_000 });
  assert.equal(failed.code, 12, `the drill whose marker never comes fails: ${failed.stderr}`);

  const daemon: ChildProcess = spawn(process.execPath, [HAVEN_BIN, 'serve', '--rpo-interval', '2'], {
    env: h.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let daemonErr = '';
  daemon.stderr?.on('data', (b: Buffer) => {
    daemonErr += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
  onCleanup(async () => {
    if (daemon.exitCode === null) daemon.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor('the daemon to listen', async () => (await fetch(`${base}/healthz`)).ok || undefined, 60_000);
  const tokenFile = join(h.stateDir, 'api-token');
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const r = await fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${token}` } });
    assert.ok(r.ok, `${init.method ?? 'GET'} ${path}: ${r.status} ${await r.clone().text()}`);
    return (await r.json()) as T;
  };

  const browser: Browser = await launchChromium({ ...process.env, TZ: ZONE });
  onCleanup(() => browser.close());
  /** A new tab (its own storage) whose errors are collected: a CSP violation is one. */
  const open = async (width = 1280) => {
    const context = await browser.newContext({ viewport: { width, height: 900 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    return { page, errors, close: () => context.close() };
  };
  const ready = async (page: Page) => {
    await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
    await page.waitForSelector('#trends[data-loaded]', { timeout: 120_000 });
    await page.waitForSelector('#restore-points[data-loaded]', { timeout: 120_000 });
  };

  await t.test('the page and its files need no token; the API still does', async () => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await page.text();
    assert.match(html, /<script src="\/ui\/app\.js"/);
    assert.ok(!html.includes(guest.name), 'the page itself holds no data');
    for (const [file, type] of [
      ['app.js', /^text\/javascript/],
      ['charts.js', /^text\/javascript/],
      ['panels.js', /^text\/javascript/],
      ['uPlot.iife.min.js', /^text\/javascript/],
      ['app.css', /^text\/css/],
      ['uPlot.min.css', /^text\/css/],
    ] as const) {
      const r = await fetch(`${base}/ui/${file}`);
      assert.equal(r.status, 200, file);
      assert.match(r.headers.get('content-type') ?? '', type, file);
    }
    assert.equal((await fetch(`${base}/ui/haven-t-ui-none.js`)).status, 404);
    assert.deepEqual(await (await fetch(`${base}/ui/setup.json`)).json(), { tokenFile });

    for (const path of [
      '/api/status',
      '/api/jobs',
      '/api/progress',
      '/api/history',
      '/api/summary',
      '/api/restore-points',
    ]) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 401, path);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'API_UNAUTHORIZED');
    }
    assert.equal(await rawGet(port, '//api/status'), 401);
    assert.equal(await rawGet(port, '/ui/../api/status'), 401);
    assert.equal(await rawGet(port, '/ui/..%2Fapi%2Fstatus'), 404, 'a file name, not a way out of /ui');
    const bad = await fetch(`${base}/api/history?days=0`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(bad.status, 400);
  });

  await t.test('no token: the form, naming the token file where the state directory really is', async () => {
    const { page, close } = await open();
    await page.goto(`${base}/`);
    await page.waitForSelector('body[data-state="needs-token"]');
    const message = await page.textContent('#message');
    assert.match(message ?? '', /needs the token/);
    assert.ok(message?.includes(tokenFile), `the message names ${tokenFile}: ${message}`);
    assert.ok(!message?.includes('/var/lib/haven'), 'not the default path: HAVEN_STATE_DIR is elsewhere');
    assert.equal(await page.getAttribute('#token-input', 'placeholder'), `the contents of ${tokenFile}`);
    assert.equal(await page.isVisible('#data'), false);
    await close();
  });

  await t.test('a wrong token: refused, no data anywhere', async () => {
    const { page, close } = await open();
    await page.goto(`${base}/#token=0123456789abcdef`);
    await page.waitForSelector('body[data-state="needs-token"]');
    assert.match((await page.textContent('#message')) ?? '', /refused this token/);
    assert.equal(await page.isVisible('#token-form'), true);
    const text = await page.evaluate(() => document.body.innerText);
    assert.ok(!text.includes(guest.name), 'no server name anywhere');
    assert.ok(!text.includes('nightly'), 'no job name anywhere');
    await close();
  });

  const { page, errors, close } = await open();
  onCleanup(close);

  await t.test('typing the token: tiles, tables and times as the API and the CLI have them', async () => {
    await waitFor(
      'the RPO check to open a problem',
      async () => (await api<Array<{ dedupKey: string }>>('/api/problems')).length > 0 || undefined,
      60_000,
    );
    await page.goto(`${base}/`);
    await page.waitForSelector('#token-form:not([hidden])');
    await page.fill('#token-input', token);
    await page.click('#token-form button[type="submit"]');
    await ready(page);
    assert.equal(await page.evaluate(() => window.location.hash), '', 'no token in the address bar');
    assert.equal(await page.textContent('#zone'), `times in ${ZONE}`);

    const summary = await api<Summary>('/api/summary');
    assert.deepEqual(summary.servers, { total: 1, protected: 0, atRisk: 0, failing: 1 }, 'breached: failing');
    assert.deepEqual(summary.drills, { passing: 1, failing: 1 });
    const tile = (name: string) => page.textContent(`[data-tile="${name}"] .value`);
    assert.equal(await tile('protected'), '0');
    assert.equal(await tile('at-risk'), '0');
    assert.equal(await tile('failing'), '1');
    assert.equal(await page.getAttribute('[data-tile="failing"]', 'data-kind'), 'bad');
    assert.equal(await tile('problems'), String(summary.openProblems));
    assert.equal(await tile('drills'), '1/2');
    const space = summary.targets.find((x) => x.target === 'dr');
    assert.ok(space && space.totalBytes > 0, 'the target reported its space');
    assert.equal(await tile('space'), `${Math.floor((100 * space.freeBytes) / space.totalBytes)} %`);

    const row = page.locator(`#status tr[data-server="${guest.name}"][data-target="dr"]`);
    assert.match((await row.getAttribute('class')) ?? '', /\bbreached\b/);
    const [status] = await api<Array<{ lastGoodAt: string; lastRunId: number }>>('/api/status');
    const newest = formatLocalTime(new Date(status!.lastGoodAt), ZONE);
    const shown = await row.locator('td').nth(3).textContent();
    assert.ok(shown?.startsWith(`${newest} (`), `the page shows ${newest}: ${shown}`);
    assert.match(
      (await row.locator('td').nth(7).textContent()) ?? '',
      new RegExp(`^ok run ${status!.lastRunId}$`),
    );
    // The CLI shows the same instant in the same style, the zone in the header.
    const cli = await runHaven(h, ['status']);
    assert.match(cli.stdout, new RegExp(`newest copy \\(${ZONE.replace('/', '\\/')}\\)`));
    assert.ok(cli.stdout.includes(newest), `haven status shows ${newest}:\n${cli.stdout}`);
    const images = await runHaven(h, ['images', '--store', store]);
    assert.match(images.stdout, /taken at \(Europe\/Berlin\)/);
    assert.match(images.stdout, /_1\W+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\W/);

    assert.equal(await page.textContent('#progress tbody'), 'No copy running.');
    assert.ok(await page.isVisible('button[data-run="nightly"]'));
    assert.match((await page.textContent('#connection')) ?? '', /^live updates$/);
  });

  await t.test('each chart shows the data the API holds', async () => {
    const onPage = await chartsOnPage(page);
    const loadedTo = Date.parse((await page.getAttribute('#trends', 'data-loaded'))!) / 1000;
    const history = await api<HistoryView>('/api/history?days=14');
    const from = Date.parse(history.from) / 1000;
    const expected = expectedCharts(history);
    for (const name of ['age', 'bytes', 'duration', 'throughput', 'drills', 'capacity']) {
      const want = comparable(expected[name]!, from, Date.parse(history.to) / 1000);
      assert.ok(want.length > 0 && want.every((s) => s.points.length > 0), `${name}: the API has data`);
      const got = comparable(onPage[name]!, loadedTo - 14 * 86400, loadedTo);
      assert.deepEqual(got, want, `chart ${name}`);
    }
    // The recorded facts behind them, so the charts are not merely self-consistent.
    const runs = history.runs.find((r) => r.server === guest.name && r.target === 'dr');
    assert.equal(runs?.points.length, 2, 'two copies');
    assert.ok(runs!.points.every((p) => p.status === 'ok' && p.bytesSent > 0));
    const drills = history.drills.find((d) => d.server === guest.name);
    assert.deepEqual(
      drills?.points.map((p) => p.result),
      ['pass', 'fail'],
    );
    assert.ok(drills!.points[0]!.recoverySeconds! > 0, 'a measured recovery time');
    const age = history.rpo.find((r) => r.server === guest.name);
    assert.equal(age?.objectiveSeconds, 1);
    assert.ok(history.capacity.some((c) => c.target === 'dr' && c.points.length === 2));
  });

  await t.test('restore points: every generation at the target with its tested state', async () => {
    const points = await api<PairRestorePoints[]>('/api/restore-points');
    const pair = points.find((p) => p.server === guest.name && p.target === 'dr');
    assert.ok(pair && pair.error === null, JSON.stringify(points));
    assert.deepEqual(
      pair.generations?.map((g) => g.seq),
      [1, 2],
    );
    assert.deepEqual(
      pair.generations?.map((g) => g.tested?.result ?? 'none'),
      ['fail', 'none'],
      'both drills tried the newest; the last said fail',
    );
    const rows = await page.$$eval(
      `.restore[data-server="${guest.name}"][data-target="dr"] tbody tr`,
      (trs) =>
        trs.map((tr) => [
          tr.getAttribute('data-generation-id'),
          tr.getAttribute('data-seq'),
          tr.getAttribute('data-tested'),
        ]),
    );
    assert.deepEqual(
      rows,
      pair.generations!.map((g) => [g.id, String(g.seq), g.tested?.result ?? 'none']),
    );
  });

  await t.test('Run now, the progress bar, Cancel', async () => {
    await guest.writePattern('vda', 3, 200);
    await page.click('button[data-run="nightly"]');
    await page.waitForSelector('#message.info');
    const started = /Run #(\d+) of nightly started\./.exec((await page.textContent('#message')) ?? '');
    assert.ok(started, 'the page says the run started');
    const runId = started[1]!;
    const bar = page.locator(`#progress tr[data-run-id="${runId}"][data-server="${guest.name}"] progress`);
    await bar.waitFor({ timeout: 120_000 });
    await waitFor(
      'bytes to be copied',
      async () => Number((await bar.getAttribute('value')) ?? '0') >= 0 || undefined,
    );
    assert.equal(await bar.getAttribute('max'), '100');
    assert.match(
      (await page.textContent(`#progress tr[data-run-id="${runId}"] td.done`)) ?? '',
      /^[\d.]+ (B|KiB|MiB) of [\d.]+ MiB \(\d+ %\)$/,
    );
    page.once('dialog', (d) => void d.accept());
    await page.click(`button[data-cancel="${runId}"]`, { timeout: 30_000 });
    await waitFor(
      'the run to end',
      async () => (await api<RunView>(`/api/runs/${runId}`)).status === 'cancelled' || undefined,
      60_000,
    );
    assert.match((await page.textContent('#message')) ?? '', new RegExp(`Cancelling run #${runId}\\.`));
    await page.waitForSelector(`#runs tr[data-run-id="${runId}"][data-status="cancelled"]`, {
      timeout: 30_000,
    });
    await page.waitForSelector('button[data-run="nightly"]', { timeout: 30_000 });
    assert.equal(await page.locator(`#progress tr[data-run-id="${runId}"]`).count(), 0, 'its bar is gone');
  });

  await t.test('Forget token: back to the form, nothing of the data left', async () => {
    await page.click('#forget');
    await page.waitForSelector('body[data-state="needs-token"]');
    assert.ok((await page.textContent('#message'))?.includes(tokenFile));
    assert.equal(await page.evaluate(() => sessionStorage.getItem('haven-token')), null);
    const left = await page.evaluate(() => ({
      text: document.getElementById('data')!.innerText,
      charts: Array.from(document.querySelectorAll('[data-chart]')).filter(
        (c) => (c as HTMLElement & { chart?: unknown }).chart,
      ).length,
      rows: document.querySelectorAll('#data tbody tr').length,
    }));
    assert.equal(left.charts, 0);
    assert.equal(left.rows, 0);
    assert.ok(!left.text.includes(guest.name));
    await page.reload();
    await page.waitForSelector('body[data-state="needs-token"]');
    assert.deepEqual(errors, [], 'no script error, no CSP violation');
  });

  await t.test('at phone width (420 px) nothing scrolls sideways', async () => {
    const phone = await open(420);
    await phone.page.goto(`${base}/#token=${token}`);
    await ready(phone.page);
    const widths = await phone.page.evaluate(() => ({
      page: document.scrollingElement!.scrollWidth,
      widest: Math.max(
        ...Array.from(document.querySelectorAll('#data *')).map((e) => e.getBoundingClientRect().right),
      ),
      charts: document.querySelectorAll('[data-chart] canvas').length,
    }));
    assert.ok(widths.page <= 420, `the page is ${widths.page} px wide`);
    assert.ok(widths.widest <= 420, `an element reaches ${widths.widest} px`);
    assert.ok(widths.charts >= 6, 'the charts are drawn');
    assert.ok(await phone.page.isVisible('[data-tile="failing"]'));
    assert.deepEqual(phone.errors, []);
    await phone.close();
  });

  await t.test('/metrics of the real daemon passes promtool', async () => {
    const r = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    const text = await r.text();
    const check = await promtoolCheckMetrics(text);
    assert.equal(check.code, 0, check.findings);
    assert.match(text, /haven_drills_total\{drill="never",server="[^"]+",result="fail"\} 1/);
    assert.match(text, /haven_target_free_bytes\{target="dr"\} \d+/);
  });

  daemon.kill('SIGTERM');
  assert.equal(await exited, 0, daemonErr);
});
