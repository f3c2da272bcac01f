/**
 * Issue 13.4 with the real `haven serve` in a child process: live progress streams are capped
 * per client address and in total (429 / 503 with a JSON error and Retry-After; the refusals are
 * logged once a minute per address), a place comes back when its stream closes, and behind a
 * declared TLS proxy the client is the address the proxy forwards. A daemon listening where
 * other hosts reach it over plain HTTP warns at start, in `haven doctor` and in
 * `haven config check`; declaring the TLS proxy silences all three. Streams come from several
 * loopback addresses (127.0.0.1–3) so the two limits can be told apart.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { type IncomingMessage, request } from 'node:http';
import { test } from 'node:test';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { type HavenEnv, havenEnv, runHaven } from '../helpers/haven.ts';
import { freePort, scratchDir, waitFor, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-daemon-limits';

interface Daemon {
  stderr(): string;
  stop(): Promise<number | null>;
}

async function serve(h: HavenEnv, port: number, onCleanup: (fn: () => unknown) => void): Promise<Daemon> {
  const child: ChildProcess = spawn(process.execPath, [HAVEN_BIN, 'serve'], {
    env: h.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000)),
    ]);
    if (code === 'hung') child.kill('SIGKILL');
    return code === 'hung' ? null : code;
  };
  onCleanup(stop);
  await waitFor(
    'the daemon to listen',
    async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok || undefined,
    60_000,
  );
  return { stderr: () => err, stop };
}

interface Stream {
  status: number;
  headers: IncomingMessage['headers'];
  /** The JSON body of a refusal. */
  body?: {
    error: { code: string; kind: string; message: string; hint?: string; details?: { limit?: string } };
  };
  close(): Promise<void>;
}

/** GET /api/progress from `localAddress`; a 200 stays open until close(). */
function progress(
  port: number,
  token: string,
  localAddress: string,
  headers: Record<string, string> = {},
): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/api/progress',
        localAddress,
        headers: { authorization: `Bearer ${token}`, ...headers },
      },
      (res) => {
        const close = () =>
          new Promise<void>((r) => {
            res.once('close', () => r());
            req.destroy();
          });
        if (res.statusCode === 200) {
          res.once('data', () => resolve({ status: 200, headers: res.headers, close }));
          return;
        }
        let text = '';
        res.on('data', (b: Buffer) => {
          text += b.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text), close }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('haven serve caps live progress streams per client and in total', async (t) => {
  const { dir, onCleanup } = await scratchDir(t, PREFIX);
  const port = await freePort();
  const config = await writeConfig(
    dir,
    `daemon:
  listen: 127.0.0.1:${port}
  progress_streams: 3
  progress_streams_per_client: 2
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const daemon = await serve(h, port, onCleanup);
  const token = (await readFile(`${h.stateDir}/api-token`, 'utf8')).trim();

  const a1 = await progress(port, token, '127.0.0.1');
  const a2 = await progress(port, token, '127.0.0.1');
  assert.deepEqual([a1.status, a2.status], [200, 200]);
  // 1,500 were all accepted before the cap; now every one past the client's share is refused.
  for (let i = 0; i < 20; i++) {
    const over = await progress(port, token, '127.0.0.1');
    assert.equal(over.status, 429);
    assert.equal(over.headers['retry-after'], '30');
    assert.equal(over.body?.error.code, 'API_TOO_MANY_STREAMS');
    assert.equal(over.body?.error.details?.limit, 'client');
    assert.match(over.body!.error.hint!, /progress_streams_per_client/);
  }
  const refusedLines = daemon
    .stderr()
    .match(/refused a progress stream to 127\.0\.0\.1: 2 progress streams from 127\.0\.0\.1 are open/g);
  assert.equal(refusedLines?.length, 1, 'twenty refusals, one log line');

  const b1 = await progress(port, token, '127.0.0.2');
  assert.equal(b1.status, 200, 'another address has its own share');
  const full = await progress(port, token, '127.0.0.3');
  assert.equal(full.status, 503);
  assert.equal(full.body?.error.details?.limit, 'total');
  assert.match(full.body!.error.message, /3 progress streams are open \(at most 3\)/);

  // Without the token nothing is counted or opened.
  const anonymous = await fetch(`http://127.0.0.1:${port}/api/progress`);
  assert.equal(anonymous.status, 401);

  await a1.close();
  const again = await waitFor('a place to come back', async () => {
    const s = await progress(port, token, '127.0.0.1');
    if (s.status === 200) return s;
    return undefined;
  });
  await Promise.all([again.close(), a2.close(), b1.close()]);
  assert.doesNotMatch(daemon.stderr(), /plain HTTP/);
  assert.equal(await daemon.stop(), 0);
});

test('haven serve warns when other hosts reach it over plain HTTP, unless a TLS proxy is declared', async (t) => {
  const { dir, onCleanup } = await scratchDir(t, PREFIX);
  const port = await freePort();
  const exposedConfig = await writeConfig(dir, `daemon:\n  listen: 0.0.0.0:${port}\n`);
  const exposed = await havenEnv(dir, { HAVEN_CONFIG: exposedConfig });

  const check = await runHaven(exposed, ['config', 'check']);
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /daemon\.listen.*which other hosts can reach, over plain HTTP/s);
  const doctor = await runHaven(exposed, ['doctor', '--json']);
  const row = (
    JSON.parse(doctor.stdout) as { checks: Array<{ id: string; status: string; fix?: string }> }
  ).checks.find((c) => c.id === 'daemon-listen');
  assert.equal(row?.status, 'warn');
  assert.match(row!.fix!, /daemon\.tls_proxy/);
  const daemon = await serve(exposed, port, onCleanup);
  assert.match(
    daemon.stderr(),
    /warn: the daemon listens on 0\.0\.0\.0:\d+, which other hosts can reach, over plain HTTP/,
  );
  assert.equal(await daemon.stop(), 0);

  // Declared: a TLS proxy on this host forwards the clients; no warning anywhere.
  const proxied = await havenEnv(dir, {
    HAVEN_CONFIG: await writeConfig(
      dir,
      `daemon:\n  listen: 0.0.0.0:${port}\n  tls_proxy: 127.0.0.1\n  progress_streams_per_client: 1\n`,
    ),
  });
  const quiet = await runHaven(proxied, ['config', 'check']);
  assert.doesNotMatch(quiet.stdout, /plain HTTP/);
  const doctorOk = await runHaven(proxied, ['doctor', '--json']);
  const okRow = (
    JSON.parse(doctorOk.stdout) as { checks: Array<{ id: string; status: string }> }
  ).checks.find((c) => c.id === 'daemon-listen');
  assert.equal(okRow?.status, 'ok');
  const behind = await serve(proxied, port, onCleanup);
  assert.doesNotMatch(behind.stderr(), /plain HTTP/);
  const token = (await readFile(`${proxied.stateDir}/api-token`, 'utf8')).trim();
  // Through the proxy (127.0.0.1), each forwarded client has its own share...
  const x = await progress(port, token, '127.0.0.1', { 'x-forwarded-for': '198.51.100.7' });
  const y = await progress(port, token, '127.0.0.1', { 'x-forwarded-for': '198.51.100.8' });
  const x2 = await progress(port, token, '127.0.0.1', { 'x-forwarded-for': '198.51.100.7' });
  assert.deepEqual([x.status, y.status, x2.status], [200, 200, 429]);
  assert.match(x2.body!.error.message, /from 198\.51\.100\.7/);
  // ...and from anywhere else the header is not believed: that address is the client.
  const direct1 = await progress(port, token, '127.0.0.2', { 'x-forwarded-for': '198.51.100.9' });
  const direct2 = await progress(port, token, '127.0.0.2', { 'x-forwarded-for': '198.51.100.10' });
  assert.deepEqual([direct1.status, direct2.status], [200, 429]);
  assert.match(direct2.body!.error.message, /from 127\.0\.0\.2/);
  await Promise.all([x.close(), y.close(), direct1.close()]);
  assert.equal(await behind.stop(), 0);
});
