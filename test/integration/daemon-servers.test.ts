/**
 * `GET /api/servers` of a running `haven serve`: every domain with its state, persistence, disks
 * and sizes, the jobs that select it, and its protection rows — and an answer that follows the
 * host, not a cached picture of it: after a disk grows (offline with qemu-img, live with
 * `virsh blockresize`) and a guest stops, the next answer says so.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { havenEnv } from '../helpers/haven.ts';
import { freePort, scratchDir, startDaemon, waitFor, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-dservers';
const MiB = 1024 * 1024;

interface ServerView {
  name: string;
  state: string;
  persistent: boolean;
  disks: Array<{ target: string; storeName: string | undefined; size: number | undefined; path: string }>;
  sizeBytes: number;
  jobs: string[];
  protection: Array<{ server: string; job: string }>;
}

test('GET /api/servers describes every server and follows disk and state changes', async (t) => {
  const { dir } = await scratchDir(t, PREFIX);
  const live = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const off = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 48 }, { sizeMiB: 16, format: 'raw' }],
    start: false,
  });
  const port = await freePort();
  const config = await writeConfig(
    dir,
    `targets:
  dr:
    url: ${join(dir, 'store')}
jobs:
  both:
    servers: [${live.name}, ${off.name}]
    target: dr
  one:
    servers: [${off.name}]
    target: dr
daemon:
  listen: 127.0.0.1:${port}
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const daemon = startDaemon(t, h.env);
  const base = `http://127.0.0.1:${port}`;
  await waitFor('the daemon to listen', async () => (await fetch(`${base}/healthz`)).ok || undefined, 60_000);
  const token = (await readFile(join(h.stateDir, 'api-token'), 'utf8')).trim();
  const servers = async (): Promise<Map<string, ServerView>> => {
    const r = await fetch(`${base}/api/servers`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, daemon.stderr());
    return new Map(((await r.json()) as ServerView[]).map((s) => [s.name, s]));
  };
  // The daemon's selections come from its first RPO check; the jobs column waits for it.
  await waitFor('the jobs to select both servers', async () => {
    const s = await servers();
    return s.get(live.name)?.jobs.length === 1 && s.get(off.name)?.jobs.length === 2 ? true : undefined;
  });

  const first = await servers();
  const a = first.get(live.name);
  const b = first.get(off.name);
  assert.ok(a && b, 'both test guests listed');
  assert.equal(a.state, 'running');
  assert.equal(b.state, 'shut off');
  assert.equal(a.persistent, true);
  assert.deepEqual(
    a.disks.map((d) => [d.target, d.storeName, d.size, d.path]),
    [['vda', live.disks[0]!.storeName, 32 * MiB, live.disks[0]!.path]],
  );
  assert.deepEqual(
    b.disks.map((d) => [d.target, d.size]),
    [
      ['vda', 48 * MiB],
      ['vdb', 16 * MiB],
    ],
  );
  assert.equal(b.sizeBytes, 64 * MiB);
  assert.deepEqual(a.jobs, ['both']);
  assert.deepEqual([...b.jobs].sort(), ['both', 'one']);
  assert.deepEqual(
    b.protection.map((p) => p.server),
    [off.name],
    'one protection row: both jobs copy it to the same target',
  );

  // Grown offline (qcow2 header and raw file length), live through QEMU, and the guest stopped.
  await exec('qemu-img', ['resize', '-f', 'qcow2', off.disks[0]!.path, '80M']);
  await exec('qemu-img', ['resize', '-f', 'raw', off.disks[1]!.path, '24M']);
  await exec('virsh', [
    '-c',
    'qemu:///system',
    'blockresize',
    '--domain',
    live.name,
    '--path',
    'vda',
    '--size',
    '40M',
  ]);
  const grown = await servers();
  assert.deepEqual(
    grown.get(off.name)?.disks.map((d) => d.size),
    [80 * MiB, 24 * MiB],
  );
  assert.equal(grown.get(off.name)?.sizeBytes, 104 * MiB);
  assert.equal(grown.get(live.name)?.disks[0]?.size, 40 * MiB);

  await live.destroy();
  assert.equal((await servers()).get(live.name)?.state, 'shut off');
});
