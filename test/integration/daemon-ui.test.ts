/**
 * The dashboard `haven serve` serves at `/`, read by a real browser: Debian's Chromium, headless,
 * against the real daemon in a child process with one real protected guest. The page's tables are
 * built by its script from the API, so a broken script fails every assertion on them; with a wrong
 * token the page shows the "needs the token" message and no data. The static files need no token,
 * the API still does.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Run, ServerResult } from '../../src/catalog/catalog.ts';
import { exec } from '../../src/core/exec.ts';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { freePort, scratchDir, waitFor, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-ui';
const CHROMIUM = '/usr/bin/chromium';

type RunView = Run & { servers: ServerResult[] };

interface Row {
  attrs: Record<string, string>;
  /** The text of each cell, tags stripped. */
  cells: string[];
  html: string;
}

function decode(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&nbsp;/g, ' ')
    .replace(/&amp;/g, '&');
}

function attrsOf(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1]!, decode(m[2]!)]));
}

/** The body rows of the table with this id in Chromium's serialised DOM. */
function tableRows(dom: string, id: string): Row[] {
  const table = new RegExp(`<table id="${id}"[^>]*>([\\s\\S]*?)</table>`).exec(dom);
  assert.ok(table, `the page has a table #${id}`);
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(table[1]!)?.[1] ?? '';
  return [...body.matchAll(/<tr([^>]*)>([\s\S]*?)<\/tr>/g)].map(([, a, inner]) => ({
    attrs: attrsOf(a!),
    cells: [...inner!.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) =>
      decode(c[1]!.replace(/<[^>]+>/g, '')).trim(),
    ),
    html: inner!,
  }));
}

function element(dom: string, id: string): { attrs: Record<string, string>; text: string } | undefined {
  const m = new RegExp(`<(\\w+) id="${id}"([^>]*)>([\\s\\S]*?)</\\1>`).exec(dom);
  return m ? { attrs: attrsOf(m[2]!), text: decode(m[3]!.replace(/<[^>]+>/g, '')).trim() } : undefined;
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

test('haven serve: the dashboard in a real browser', async (t) => {
  const { dir, onCleanup } = await scratchDir(t, PREFIX);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  await guest.writePattern('vda', 1, 16);
  const port = await freePort();
  // An objective of one second is breached as soon as the copy is made: the red mark and an open
  // problem to show. The bandwidth limit keeps a later copy running long enough to watch it.
  const config = await writeConfig(
    dir,
    `targets:
  dr:
    url: ${join(dir, 'store')}
    bandwidth: 1MiB/s
jobs:
  nightly:
    servers: [${guest.name}]
    target: dr
    schedule: "0 3 * * *"
    rpo: 1s
daemon:
  listen: 127.0.0.1:${port}
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const first = await runHaven(h, ['job', 'run', 'nightly'], { timeoutMs: 300_000 });
  assert.equal(first.code, 0, `haven job run: ${first.stderr}`);
  const [firstRun] = await havenJson<RunView[]>(h, ['runs']);
  assert.ok(firstRun && firstRun.status === 'ok', 'the first run is in the catalog');

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
  const token = (await readFile(join(h.stateDir, 'api-token'), 'utf8')).trim();
  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const r = await fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${token}` } });
    assert.ok(r.ok, `${init.method ?? 'GET'} ${path}: ${r.status} ${await r.clone().text()}`);
    return (await r.json()) as T;
  };

  /** What the page shows once its script has run: Chromium's DOM after 8 s of virtual time. */
  const browse = async (fragment: string): Promise<string> => {
    const r = await exec(
      CHROMIUM,
      [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        `--user-data-dir=${join(dir, 'chromium-profile')}`,
        '--virtual-time-budget=8000',
        '--dump-dom',
        `${base}/${fragment}`,
      ],
      { timeoutMs: 120_000 },
    );
    assert.match(r.stdout, /<\/html>/, `Chromium dumped a page: ${r.stderr.slice(-2000)}`);
    return r.stdout;
  };

  await t.test('the page and its files need no token; the API still does', async () => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await page.text();
    assert.match(html, /<script src="\/ui\/app\.js"/);
    assert.ok(!html.includes(guest.name), 'the page itself holds no data');
    const js = await fetch(`${base}/ui/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
    const css = await fetch(`${base}/ui/app.css`);
    assert.equal(css.status, 200);
    assert.match(css.headers.get('content-type') ?? '', /^text\/css/);
    assert.equal((await fetch(`${base}/ui/haven-t-ui-none.js`)).status, 404);

    for (const path of ['/api/status', '/api/jobs', '/api/progress']) {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 401, path);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'API_UNAUTHORIZED');
    }
    assert.equal(await rawGet(port, '//api/status'), 401);
    assert.equal(await rawGet(port, '/ui/../api/status'), 401);
    assert.equal(await rawGet(port, '/ui/..%2Fapi%2Fstatus'), 404, 'a file name, not a way out of /ui');
  });

  await t.test('with the token: status, jobs, runs, problems and events', async () => {
    await waitFor(
      'the RPO check to open a problem',
      async () => (await api<Array<{ dedupKey: string }>>('/api/problems')).length > 0 || undefined,
      60_000,
    );
    // The daemon listens before its scheduler has armed the timers (nextRun null until then).
    const nextRun = await waitFor(
      'the scheduler to have a next run',
      async () =>
        (await api<Array<{ name: string; nextRun: string | null }>>('/api/jobs')).find(
          (j) => j.name === 'nightly',
        )?.nextRun ?? undefined,
      60_000,
    );

    const dom = await browse(`#token=${token}`);
    assert.match(dom, /<body data-state="ready"/, 'the script loaded the data');
    assert.ok(!dom.includes(token), 'the token is not in the page');
    assert.equal(element(dom, 'message')?.attrs.hidden, '', 'no message');

    const status = tableRows(dom, 'status');
    const row = status.find((r) => r.attrs['data-server'] === guest.name);
    assert.ok(row, `the status table has ${guest.name}: ${JSON.stringify(status)}`);
    assert.equal(row.attrs['data-target'], 'dr');
    assert.equal(row.cells[0], guest.name);
    assert.equal(row.cells[1], 'dr');
    assert.equal(row.cells[2], 'nightly');
    assert.match(row.cells[6]!, /^ok\b/, 'the last result');
    assert.match(row.cells[6]!, new RegExp(`run ${firstRun.id}$`));
    assert.match(row.html, /<time datetime="[^"]+"/, 'the newest good copy time');
    assert.match(row.attrs.class ?? '', /\bbreached\b/, 'the row is marked breached');
    assert.match(row.html, /<span class="mark"/, 'the red mark');
    assert.match(row.cells[4]!, /\/ 1 s breached$/, 'age against the objective');

    const job = tableRows(dom, 'jobs').find((r) => r.attrs['data-job'] === 'nightly');
    assert.ok(job, 'the jobs table has nightly');
    assert.equal(job.cells[1], 'dr');
    assert.equal(job.cells[2], '0 3 * * *');
    assert.match(job.html, new RegExp(`<time datetime="${nextRun.replace(/\./g, '\\.')}"`), 'its next run');
    assert.match(job.html, /<button type="button" data-run="nightly">Run now<\/button>/);

    const runs = tableRows(dom, 'runs');
    const run = runs.find((r) => r.attrs['data-run-id'] === String(firstRun.id));
    assert.ok(run, `recent runs has run ${firstRun.id}`);
    assert.equal(run.attrs['data-status'], 'ok');
    assert.equal(run.cells[2], 'nightly');
    assert.equal(run.cells[3], 'manual');
    assert.match(run.cells[7]!, new RegExp(`^${guest.name} → dr ok`));

    const problem = tableRows(dom, 'problems').find(
      (r) => r.attrs['data-problem'] === `rpo:${guest.name}:dr`,
    );
    assert.ok(problem, 'the open RPO problem');
    assert.match(problem.cells[1]!, /beyond the objective/);

    const events = tableRows(dom, 'events');
    assert.ok(
      events.some((e) => e.cells[2] === 'rpo.breached' && e.cells[3] === guest.name),
      'the rpo.breached event',
    );
    assert.ok(events.some((e) => e.cells[2] === 'run.finished' && e.cells[4] === 'nightly'));

    const progress = tableRows(dom, 'progress');
    assert.deepEqual(
      progress.map((p) => p.cells.join('')),
      ['No copy running.'],
    );
    assert.match(element(dom, 'connection')?.text ?? '', /^live updates$/, 'the progress stream is open');
  });

  await t.test('a running copy: live progress and a Cancel button', async () => {
    await guest.writePattern('vda', 2, 200);
    const started = await api<{ runId: number }>('/api/jobs/nightly/runs', { method: 'POST' });
    await waitFor(
      'the transfer to start',
      async () =>
        (await api<{ progress: Array<{ bytesDone: number }> }>(`/api/runs/${started.runId}`)).progress.some(
          (p) => p.bytesDone > 0,
        ) || undefined,
      120_000,
      200,
    );
    const dom = await browse(`#token=${token}`);
    const live = tableRows(dom, 'progress').find(
      (r) => r.attrs['data-run-id'] === String(started.runId) && r.attrs['data-server'] === guest.name,
    );
    assert.ok(live, `live progress of run ${started.runId}: ${dom.slice(0, 4000)}`);
    assert.equal(live.cells[0], `#${started.runId} nightly`);
    assert.equal(live.cells[2], 'dr');
    assert.match(live.cells[4]!, /^[\d.]+ (B|KiB|MiB) of [\d.]+ MiB \(\d+ %\)$/, 'bytes done of total');
    assert.match(live.cells[6]!, /^[\d.]+ (B|KiB|MiB)\/s$/, 'the rate');
    assert.match(live.cells[7]!, /^(\d+ (s|min)|–)/, 'the ETA');
    const job = tableRows(dom, 'jobs').find((r) => r.attrs['data-job'] === 'nightly');
    assert.match(job?.html ?? '', new RegExp(`data-cancel="${started.runId}">Cancel</button>`));
    assert.match(
      job?.cells[4] ?? '',
      new RegExp(`^running run ${started.runId} `),
      'its last run is this one',
    );
    const run = tableRows(dom, 'runs').find((r) => r.attrs['data-run-id'] === String(started.runId));
    assert.equal(run?.attrs['data-status'], 'running');

    await api(`/api/runs/${started.runId}/cancel`, { method: 'POST' });
    await waitFor(
      'the run to end',
      async () =>
        (await api<RunView>(`/api/runs/${started.runId}`)).status !== 'running' ? true : undefined,
      60_000,
    );
  });

  await t.test('with a wrong token: the "needs the token" message and no data', async () => {
    const dom = await browse('#token=0123456789abcdef');
    assert.match(dom, /<body data-state="needs-token"/);
    const message = element(dom, 'message');
    assert.ok(message && message.attrs.hidden === undefined, 'the message shows');
    assert.match(message.text, /refused this token/);
    assert.match(message.text, /needs the token/);
    assert.equal(element(dom, 'token-form')?.attrs.hidden, undefined, 'the token form shows');
    assert.equal(element(dom, 'data')?.attrs.hidden, '', 'the tables are hidden');
    for (const id of ['status', 'jobs', 'runs', 'problems', 'events', 'progress']) {
      assert.deepEqual(tableRows(dom, id), [], `#${id} is empty`);
    }
    assert.ok(!dom.includes(guest.name), 'no server name anywhere');
    assert.ok(!dom.includes('nightly'), 'no job name anywhere');
  });

  await t.test('with no token: the form and the message', async () => {
    const dom = await browse('');
    assert.match(dom, /<body data-state="needs-token"/);
    assert.match(element(dom, 'message')?.text ?? '', /needs the token/);
    assert.ok(!dom.includes(guest.name));
  });

  daemon.kill('SIGTERM');
  assert.equal(await exited, 0, daemonErr);
});
