/**
 * Issue 4, must-shows two, four and five, with the real `haven serve` in a child process and
 * real guests: the API refuses requests without the token; a run missed while the daemon was
 * down runs once at start; a schedule fires while the daemon runs and the run shows in
 * `haven runs` and in the API; /metrics, scraped and parsed, has the RPO age of each protected
 * server; a run started through the API streams its progress as server-sent events; a run can be
 * cancelled.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { catalogPath, openCatalog, type Run, type ServerResult } from '../../src/catalog/catalog.ts';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { havenEnv, havenJson } from '../helpers/haven.ts';
import { freePort, parsePrometheus, scratchDir, waitFor, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-daemon';

type RunView = Run & { servers: ServerResult[] };

test('haven serve: token, missed and scheduled runs, runs in CLI and API, metrics, SSE, cancel', async (t) => {
  const { dir, onCleanup } = await scratchDir(t, PREFIX);
  const store = join(dir, 'store');
  const g1 = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const g2 = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  await g1.writePattern('vda', 1, 12);
  await g2.writePattern('vda', 2, 6);
  const port = await freePort();
  const config = await writeConfig(
    dir,
    `targets:
  dr:
    url: ${store}
    copies: 2
  slow:
    url: ${join(dir, 'slow-store')}
    bandwidth: 1MiB/s
jobs:
  every-minute:
    servers: [${g1.name}, ${g2.name}]
    target: dr
    schedule: "* * * * *"
    rpo: 1h
  on-demand:
    servers: [${g1.name}]
    target: slow
daemon:
  listen: 127.0.0.1:${port}
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });

  // The daemon acted on a fire time ten minutes ago; the ones since were missed.
  const seed = openCatalog(catalogPath(h.stateDir));
  seed.schedule.update('job', 'every-minute', { lastFireAt: new Date(Date.now() - 600_000) });
  seed.close();

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
  const tokenFile = join(h.stateDir, 'api-token');
  await waitFor('the daemon to listen', async () => (await fetch(`${base}/healthz`)).ok || undefined, 60_000);
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const auth = { authorization: `Bearer ${token}` };
  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const r = await fetch(`${base}${path}`, {
      ...init,
      headers: { ...auth, ...(init.headers ?? {}) },
      signal: AbortSignal.timeout(90_000),
    });
    assert.ok(r.ok, `${init.method ?? 'GET'} ${path}: ${r.status} ${await r.clone().text()}`);
    return (await r.json()) as T;
  };

  await t.test('the API without the token is refused', async () => {
    const mode = (await import('node:fs')).statSync(tokenFile).mode & 0o777;
    assert.equal(mode, 0o600, 'token file is 0600');
    for (const [method, path] of [
      ['GET', '/api/jobs'],
      ['GET', '/api/runs'],
      ['GET', '/api/servers'],
      ['GET', '/api/events'],
      ['GET', '/api/status'],
      ['GET', '/api/progress'],
      ['GET', '/metrics'],
      ['POST', '/api/jobs/on-demand/runs'],
      ['POST', '/api/runs/1/cancel'],
    ] as const) {
      for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: token }] as Array<
        Record<string, string>
      >) {
        const r = await fetch(`${base}${path}`, { method, headers });
        assert.equal(r.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`);
        assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="haven"');
        const body = (await r.json()) as { error: { code: string } };
        assert.equal(body.error.code, 'API_UNAUTHORIZED');
      }
    }
    const runs = await api<RunView[]>('/api/runs?job=on-demand');
    assert.equal(runs.length, 0, 'the refused POST started nothing');
  });

  await t.test('a run missed while the daemon was down runs once at start', async () => {
    const missed = await waitFor(
      'the missed run to finish',
      async () =>
        (await api<RunView[]>('/api/runs?job=every-minute')).find(
          (r) => r.trigger === 'missed' && r.status !== 'running',
        ),
      180_000,
    );
    assert.equal(missed.status, 'ok', daemonErr);
    const all = await api<RunView[]>('/api/runs?job=every-minute');
    assert.equal(all.filter((r) => r.trigger === 'missed').length, 1, 'once, however many were missed');
  });

  let scheduled!: RunView;
  await t.test(
    'a schedule fires while the daemon runs; the run shows in haven runs and the API',
    async () => {
      scheduled = await waitFor(
        'a scheduled run to finish',
        async () =>
          (await api<RunView[]>('/api/runs?job=every-minute')).find(
            (r) => r.trigger === 'schedule' && r.status !== 'running',
          ),
        200_000,
        500,
      );
      assert.equal(scheduled.status, 'ok');
      assert.deepEqual(scheduled.servers.map((s) => s.server).sort(), [g1.name, g2.name].sort());
      assert.equal(
        new Date(scheduled.startedAt).getUTCSeconds() < 30,
        true,
        'started at the top of a minute',
      );
      const detail = await api<RunView>(`/api/runs/${scheduled.id}`);
      assert.equal(detail.id, scheduled.id);
      assert.ok(detail.servers.every((s) => s.status === 'ok' && s.generationId));

      const cli = await havenJson<RunView[]>(h, ['runs']);
      const same = cli.find((r) => r.id === scheduled.id);
      assert.ok(same, '`haven runs` lists the scheduled run');
      assert.equal(same.trigger, 'schedule');
      assert.equal(same.job, 'every-minute');
      assert.equal(same.status, 'ok');

      const jobs = await api<Array<{ name: string; nextRun: string | null }>>('/api/jobs');
      const next = jobs.find((j) => j.name === 'every-minute')!.nextRun;
      assert.ok(next && new Date(next).getUTCSeconds() === 0, 'the next run time is shown');
      assert.equal(jobs.find((j) => j.name === 'on-demand')!.nextRun, null);
    },
  );

  await t.test('/metrics, scraped and parsed, has the RPO age of each protected server', async () => {
    const r = await fetch(`${base}/metrics`, { headers: auth });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    const samples = parsePrometheus(await r.text());
    const now = Date.now() / 1000;
    for (const g of [g1, g2]) {
      const labels = { server: g.name, target: 'dr', haven_job: 'every-minute' };
      const age = samples.find(
        (s) => s.name === 'haven_server_rpo_age_seconds' && s.labels.server === g.name,
      );
      assert.ok(age, `RPO age of ${g.name}`);
      assert.deepEqual(age.labels, labels);
      const good = samples.find(
        (s) => s.name === 'haven_server_last_good_copy_timestamp_seconds' && s.labels.server === g.name,
      )!;
      assert.ok(age.value >= 0 && age.value < 3600, `age ${age.value}`);
      assert.ok(Math.abs(now - good.value - age.value) < 30, 'age is now minus the newest good copy');
      const objective = samples.find(
        (s) => s.name === 'haven_server_rpo_objective_seconds' && s.labels.server === g.name,
      );
      assert.equal(objective?.value, 3600);
      assert.equal(
        samples.find((s) => s.name === 'haven_server_rpo_breached' && s.labels.server === g.name)?.value,
        0,
      );
      assert.equal(
        samples.find((s) => s.name === 'haven_server_last_run_success' && s.labels.server === g.name)?.value,
        1,
      );
      const sent = samples.find(
        (s) => s.name === 'haven_server_last_run_sent_bytes' && s.labels.server === g.name,
      );
      assert.ok(sent && sent.value > 0, 'the last run sent bytes');
    }
    assert.equal(
      samples.find((s) => s.name === 'haven_job_failures_total' && s.labels.haven_job === 'every-minute')
        ?.value,
      0,
    );
  });

  await t.test(
    'a run started through the API streams its progress; generations from the target',
    async () => {
      const events: Array<{ kind: string; data: { type?: string; runId?: number; server?: string } }> = [];
      let buffer = '';
      const sse = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
        const req = get(`${base}/api/progress`, { headers: auth }, resolve);
        req.on('error', reject);
      });
      assert.equal(sse.statusCode, 200);
      assert.match(sse.headers['content-type'] ?? '', /text\/event-stream/);
      sse.on('data', (b: Buffer) => {
        buffer += b.toString();
        let i = buffer.indexOf('\n\n');
        while (i >= 0) {
          const frame = buffer.slice(0, i);
          buffer = buffer.slice(i + 2);
          const kind = /^event: (.*)$/m.exec(frame)?.[1];
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (kind && data) events.push({ kind, data: JSON.parse(data) });
          i = buffer.indexOf('\n\n');
        }
      });
      const started = await api<{ runId: number }>('/api/jobs/on-demand/runs', { method: 'POST' });
      const conflict = await fetch(`${base}/api/jobs/on-demand/runs`, { method: 'POST', headers: auth });
      assert.equal(conflict.status, 409, 'one run of a job at a time');
      assert.equal(
        ((await conflict.json()) as { error: { code: string } }).error.code,
        'JOB_ALREADY_RUNNING',
      );
      await waitFor(
        'run.finished on the stream',
        () =>
          events.find(
            (e) => e.kind === 'update' && e.data.type === 'run.finished' && e.data.runId === started.runId,
          ),
        120_000,
      );
      sse.destroy();
      const progress = events.filter(
        (e) => e.kind === 'update' && e.data.type === 'progress' && e.data.runId === started.runId,
      );
      assert.ok(progress.length > 0, 'progress updates were streamed');
      assert.ok(progress.every((e) => e.data.server === g1.name));
      assert.ok(
        events.some((e) => e.kind === 'event' && (e.data as { type?: string }).type === 'run.started'),
      );
      const run = await api<RunView>(`/api/runs/${started.runId}`);
      assert.equal(run.status, 'ok');
      assert.equal(run.trigger, 'api');

      const gens = await api<
        Array<{
          server: string;
          target: string;
          catalog: { lastGoodGeneration: string };
          target_says: { newest?: { id: string } };
        }>
      >(`/api/generations?server=${g1.name}`);
      const dr = gens.find((x) => x.target === 'dr')!;
      assert.equal(
        dr.target_says.newest?.id,
        dr.catalog.lastGoodGeneration,
        'the target agrees with the catalog',
      );
      assert.equal(
        gens.find((x) => x.target === 'slow')?.target_says.newest?.id,
        run.servers[0]!.generationId,
      );
    },
  );

  await t.test('a run can be cancelled', async () => {
    await g1.writePattern('vda', 9, 200);
    const started = await api<{ runId: number }>('/api/jobs/on-demand/runs', { method: 'POST' });
    await waitFor(
      'the transfer to start',
      async () =>
        (await api<{ progress: unknown[] }>(`/api/runs/${started.runId}`)).progress.length > 0
          ? true
          : undefined,
      60_000,
      100,
    );
    const c = await api<{ cancelling: boolean }>(`/api/runs/${started.runId}/cancel`, { method: 'POST' });
    assert.equal(c.cancelling, true);
    const run = await waitFor(
      'the run to end',
      async () => {
        const r = await api<RunView>(`/api/runs/${started.runId}`);
        return r.status === 'running' ? undefined : r;
      },
      60_000,
    );
    assert.equal(run.status, 'cancelled');
    assert.equal(run.servers[0]?.status, 'cancelled');
    const again = await fetch(`${base}/api/runs/${started.runId}/cancel`, { method: 'POST', headers: auth });
    assert.equal(again.status, 409);
  });

  daemon.kill('SIGTERM');
  assert.equal(await exited, 0, daemonErr);
});
