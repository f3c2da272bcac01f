/**
 * Haven as an operator runs it for good: a `haven serve` daemon whose job copies one server to a
 * `haven receive --listen` TLS target on the same host, both started once and left running, so a
 * run starts no process on either side (issue 19, goal 2). The job is triggered through the
 * daemon's API (`POST /api/jobs/<job>/runs`, as the dashboard's "run now" does); a run's time is
 * from that request to the run's end as the daemon records it (`finishedAt` of `GET /api/runs/<id>`).
 *
 * The target uses the test PKI (test/helpers/tls.ts: a throwaway CA, a server certificate for
 * 127.0.0.1) and a token; `compress: 0`, as the local store of `haven protect --to <dir>` is
 * written, so both measure the same work (random data would not compress anyway).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { type Listener, makePki, startListener, stopListener } from '../../test/helpers/tls.ts';
import { type Phase, phasesOf } from './phases.ts';

const JOB = 'bench';

export interface ServeRun {
  seconds: number;
  status: string;
  mode: string | null;
  readBytes: number;
  bytesSent: number;
  /**
   * From the job's run log, split as `haven protect`'s (phases.ts), from the API request on. A job's
   * log has only some of the markers ("point in time taken", "nbd: connected"): the rest of the run
   * shows as its last phase.
   */
  phases: Phase[];
}

export interface ServeRig {
  /** The listener's store (its newest generation is `<server>_<disk>_1.raw`). */
  store: string;
  /** Runs the job once through the daemon's API and waits for its end. */
  run(): Promise<ServeRun>;
  stop(): Promise<void>;
}

interface RunView {
  id: number;
  status: string;
  finishedAt: string | null;
  errorMessage: string | null;
  servers?: Array<{ mode: string | null; bytesRead: number; bytesSent: number; status: string }>;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `dir`: PKI, configuration, state, run and log directories; `store`: the listener's store. */
export async function startServeRig(o: {
  dir: string;
  store: string;
  domain: string;
  copies: number;
}): Promise<ServeRig> {
  const pki = join(o.dir, 'pki');
  mkdirSync(pki, { recursive: true });
  await makePki(pki);
  const token = join(pki, 'token');
  writeFileSync(token, 'haven-bench-serve-token-5e0c3b8a9d1f2e47\n', { mode: 0o600 });
  const store = o.store;
  const state = join(o.dir, 'state');
  const env = (name: string): NodeJS.ProcessEnv => {
    const d = (sub: string) => {
      const p = join(o.dir, `${name}-${sub}`);
      mkdirSync(p, { recursive: true });
      chmodSync(p, 0o1777);
      return p;
    };
    return {
      HAVEN_STATE_DIR: name === 'serve' ? state : d('state'),
      HAVEN_RUN_DIR: d('run'),
      HAVEN_LOG_DIR: d('log'),
    };
  };
  let listener: Listener | undefined;
  let daemon: ChildProcess | undefined;
  const stop = async () => {
    if (daemon && daemon.exitCode === null) {
      const exited = once(daemon, 'exit');
      daemon.kill('SIGTERM');
      await exited;
    }
    await stopListener(listener);
  };
  try {
    listener = await startListener(pki, store, ['--token-file', token], env('listener'));
    const port = 18970 + Math.floor(Math.random() * 500);
    const config = join(o.dir, 'haven.yaml');
    writeFileSync(
      config,
      `targets:
  dr:
    url: tls://127.0.0.1:${listener.port}
    copies: ${o.copies}
    compress: 0
    tls:
      ca: ${join(pki, 'ca.pem')}
      token_file: ${token}
jobs:
  ${JOB}:
    servers: [${o.domain}]
    target: dr
daemon:
  listen: 127.0.0.1:${port}
`,
    );
    let stderr = '';
    // No RPO check during the reps (the first runs at start): it would list domains meanwhile.
    daemon = spawn(process.execPath, [HAVEN_BIN, 'serve', '--rpo-interval', '86400'], {
      env: { ...process.env, ...env('serve'), HAVEN_CONFIG: config },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    daemon.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-8192);
    });
    const base = `http://127.0.0.1:${port}`;
    await waitFor(
      'haven serve to listen',
      async () => ((await fetch(`${base}/healthz`)).ok ? true : undefined),
      60_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${stderr}`);
    });
    const auth = { authorization: `Bearer ${readFileSync(join(state, 'api-token'), 'utf8').trim()}` };
    const api = async <T>(path: string, method = 'GET'): Promise<T> => {
      const r = await fetch(`${base}${path}`, { method, headers: auth });
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
      return (await r.json()) as T;
    };
    return {
      store,
      stop,
      async run(): Promise<ServeRun> {
        const t0 = Date.now();
        const { runId, logFile } = await api<{ runId: number; logFile: string }>(
          `/api/jobs/${JOB}/runs`,
          'POST',
        );
        const done = await waitFor(
          `run ${runId}`,
          async () => {
            const r = await api<RunView>(`/api/runs/${runId}`);
            return r.status !== 'running' && r.finishedAt ? r : undefined;
          },
          600_000,
        );
        const [listed] = await api<RunView[]>(`/api/runs?job=${JOB}&limit=1`);
        const server = listed?.id === runId ? listed.servers?.[0] : undefined;
        if (done.status !== 'ok' || !server) {
          throw new Error(
            `haven serve's run ${runId} ended ${done.status}: ${done.errorMessage ?? ''} ${stderr}`,
          );
        }
        const seconds = (Date.parse(done.finishedAt as string) - t0) / 1000;
        return {
          seconds,
          phases: phasesOf(logFile, t0, seconds),
          status: done.status,
          mode: server.mode,
          readBytes: server.bytesRead,
          bytesSent: server.bytesSent,
        };
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
