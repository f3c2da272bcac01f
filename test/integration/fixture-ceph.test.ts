/**
 * The one-node Ceph test cluster (test/fixtures/ceph) and what Ceph's clients do when things go
 * wrong, recorded for the rbd store (issue 18): a quota that fills, an OSD or the monitor stopped.
 * The exact texts and exit codes each tool gives are asserted here and listed in the fixture's
 * README.md; t.diagnostic reports the times measured.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import { HavenError } from '../../src/core/errors.ts';
import { exec } from '../../src/core/exec.ts';
import { DAEMONS } from '../fixtures/ceph/cluster.ts';
import { CEPH_ROOT, type CephCluster, startCephCluster } from '../fixtures/ceph/index.ts';
import { defineCephSecret, rbdDiskXml } from '../fixtures/ceph/libvirt.ts';
import { liveLeases } from '../fixtures/ceph/lock.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { checkPatternInFile } from '../fixtures/guest/pattern.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { DiskModel } from '../helpers/disk-model.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function uniq(what: string): string {
  return `haven-t-ceph-${what}-${randomBytes(3).toString('hex')}`;
}

interface Attempt {
  /** Exit code, or undefined when it was still running at the deadline (then killed). */
  code: number | undefined;
  hung: boolean;
  stdout: string;
  stderr: string;
  ms: number;
}

const ANY_EXIT = Array.from({ length: 256 }, (_, i) => i);

/** Runs a command that may fail or hang: never rejects for its exit code, kills it at `timeoutMs`. */
async function attempt(command: string, args: readonly string[], timeoutMs: number): Promise<Attempt> {
  const start = Date.now();
  try {
    const r = await exec(command, args, { timeoutMs, okCodes: ANY_EXIT });
    return { code: r.code, hung: false, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - start };
  } catch (e) {
    if (!(e instanceof HavenError && e.code === 'COMMAND_TIMEOUT')) throw e;
    return { code: undefined, hung: true, stdout: '', stderr: '', ms: Date.now() - start };
  }
}

/** The rbd tool as client.admin of `ceph`, with client settings (e.g. rados_osd_op_timeout). */
function rbdArgs(ceph: CephCluster, settings: Record<string, number>, args: readonly string[]): string[] {
  const s = Object.entries(settings).flatMap(([k, v]) => [`--${k}`, String(v)]);
  return ['-c', ceph.conf, '--id', 'admin', '--keyring', ceph.keyring, ...s, ...args];
}

/** A tool's error lines (stderr, and qemu-io's "… failed: …" on stdout) without log prefixes. */
function said(a: Attempt): string {
  const failed = a.stdout.split('\n').filter((l) => /failed/.test(l));
  // rbd's progress ("Exporting image: 3% complete...") comes as \r-separated updates.
  const lines = a.stderr.split(/[\r\n]/).filter((l) => !/% complete\.\.\./.test(l));
  return [...failed, ...lines]
    .filter((l) => l.trim())
    .map((l) => l.replace(/^\S+T\S+ [0-9a-f]+ +-?\d+ /, ''))
    .join(' | ');
}

function report(t: TestContext, what: string, a: Attempt): void {
  const outcome = a.hung ? `still waiting after ${a.ms} ms (killed)` : `exit ${a.code} after ${a.ms} ms`;
  const text = said(a);
  t.diagnostic(`${what}: ${outcome}${text ? `: ${text}` : ''}`);
}

interface NbdServer {
  uri: string;
  /** What qemu-nbd printed so far. */
  stderr(): string;
  /** SIGKILL: a writer that dies holding the image's exclusive lock. */
  kill(): Promise<void>;
}

/**
 * qemu-nbd serving an rbd image on a unix socket (--cache=none: no librbd cache between a
 * client's write and the cluster). Stopped after the test with SIGTERM, so it closes the image
 * and releases the image's exclusive lock.
 */
async function serveNbd(t: TestContext, dir: string, filename: string, name: string): Promise<NbdServer> {
  const socket = join(dir, `${name}.sock`);
  const child: ChildProcess = spawn(
    'qemu-nbd',
    ['-f', 'raw', '--cache=none', '--persistent', '--shared=4', `--socket=${socket}`, filename],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise((r) => child.once('exit', r));
  const running = () => child.exitCode === null && child.signalCode === null;
  const end = async (signal: NodeJS.Signals) => {
    if (running()) child.kill(signal);
    // One waiting for the cluster (a full pool, an image lock) finishes its requests before it
    // exits on SIGTERM: that may never happen.
    const late = setTimeout(() => running() && child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(late);
  };
  t.after(() => end('SIGTERM'));
  const deadline = Date.now() + 60_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`qemu-nbd did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { uri: `nbd+unix:///?socket=${socket}`, stderr: () => stderr, kill: () => end('SIGKILL') };
}

/** Copies a raw file into an existing rbd image (qemu's rbd filename) with qemu-img. */
async function writeImage(raw: string, rbd: string): Promise<void> {
  await exec('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', raw, rbd]);
}

function qemuIo(uri: string, commands: string[], timeoutMs = 120_000): Promise<Attempt> {
  return attempt('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri], timeoutMs);
}

async function vmRss(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { rss: kib('VmRSS') * 1024, peak: kib('VmHWM') * 1024 };
}

async function reportMemory(t: TestContext, ceph: CephCluster): Promise<number> {
  let total = 0;
  const parts: string[] = [];
  for (const d of DAEMONS) {
    const pid = await ceph.pid(d);
    assert.ok(pid, `${d} runs`);
    const m = await vmRss(pid);
    total += m.rss;
    parts.push(`${d} ${Math.round(m.rss / MiB)} MiB (peak ${Math.round(m.peak / MiB)} MiB)`);
  }
  t.diagnostic(`daemon memory: ${parts.join(', ')}; total ${Math.round(total / MiB)} MiB`);
  return total;
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return Date.now() - start;
}

interface Health {
  status: string;
  checks: Record<string, { muted?: boolean }>;
}

test('a one-node cluster starts from Debian packages in one directory, or the healthy one is reused', async (t) => {
  const etcBefore = existsSync('/etc/ceph') ? (await readdir('/etc/ceph')).sort() : [];
  let start = Date.now();
  const ceph = await startCephCluster(t);
  t.diagnostic(
    `shared cluster ${ceph.reused ? 'reused' : 'created and started'} in ${Date.now() - start} ms`,
  );

  const status = JSON.parse((await ceph.ceph(['status', '--format', 'json'])).stdout) as {
    quorum_names: string[];
    osdmap: { num_osds: number; num_up_osds: number; num_in_osds: number };
    mgrmap: { available: boolean };
    health: Health;
  };
  assert.deepEqual(status.quorum_names, ['a'], 'one monitor in quorum');
  assert.equal(status.osdmap.num_up_osds, 1, 'one OSD up');
  assert.equal(status.osdmap.num_in_osds, 1, 'and in');
  assert.equal(status.mgrmap.available, true, 'the manager is active');
  // The manager runs without Python modules: the health error that causes is muted, and the
  // settings this fixture makes leave no warnings of their own (size 1, global_id reclaim).
  assert.equal(status.health.checks.MGR_MODULE_ERROR?.muted, true, 'MGR_MODULE_ERROR is muted');
  for (const check of ['POOL_NO_REDUNDANCY', 'AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED']) {
    assert.equal(status.health.checks[check], undefined, `no ${check}`);
  }
  t.diagnostic(`health ${status.health.status}: ${Object.keys(status.health.checks).join(', ')}`);

  // Everything lives under the cluster's directory; nothing was written to /etc/ceph.
  assert.ok(ceph.conf.startsWith(`${ceph.dir}/`) && ceph.keyring.startsWith(`${ceph.dir}/`));
  const run = (await readdir(join(ceph.dir, 'run'))).sort();
  assert.deepEqual(
    run,
    ['mgr.x.asok', 'mgr.x.pid', 'mon.a.asok', 'mon.a.pid', 'osd.0.asok', 'osd.0.pid'],
    'admin sockets and pid files of the three daemons in <dir>/run',
  );
  for (const log of ['mon.a.log', 'mgr.x.log', 'osd.0.log'])
    assert.ok(existsSync(join(ceph.dir, 'log', log)));
  const etcAfter = existsSync('/etc/ceph') ? (await readdir('/etc/ceph')).sort() : [];
  assert.deepEqual(etcAfter, etcBefore, '/etc/ceph untouched');
  assert.match(ceph.monHost, /^127\.0\.0\.1:\d+$/);
  assert.match(ceph.monAddrs, /^\[v2:127\.0\.0\.1:\d+,v1:127\.0\.0\.1:\d+\]$/);
  assert.equal(ceph.user, 'client.admin');
  assert.match(await ceph.adminKey(), /^[A-Za-z0-9+/]{38}==$/, 'a cephx key');

  const total = await reportMemory(t, ceph);
  assert.ok(total < 1024 * MiB, `the three daemons hold less than 1 GiB (${Math.round(total / MiB)} MiB)`);

  start = Date.now();
  const again = await startCephCluster(t);
  t.diagnostic(`a second start in the same run reused it in ${Date.now() - start} ms`);
  assert.equal(again.reused, true);
  assert.equal(again.dir, ceph.dir);
  assert.equal(again.conf, ceph.conf);
  await assert.rejects(again.stopOsd(), /only an exclusive cluster may be disrupted/);
});

interface Holder {
  info: { dir: string; fsid: string; reused: boolean };
  child: ChildProcess;
}

/** Another test process using the cluster in `dir` (test/fixtures/ceph/cli.ts), killed after the test. */
async function holdInChild(t: TestContext, dir: string): Promise<Holder> {
  const cli = join(import.meta.dirname, '..', 'fixtures', 'ceph', 'cli.ts');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', cli, '--dir', dir, '--linger-ms', '0', '--osd-gib', '4'],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`cli.ts exited ${code}: ${err}`)));
  });
  return { info: JSON.parse(line), child };
}

test('processes that start a cluster at once share it; a stale one is made anew; the last user leaving removes it', async (t) => {
  const dir = join(CEPH_ROOT, uniq('stale'));
  t.after(() => rm(`${dir}.lock`, { force: true }));
  // Two test processes ask for the same cluster at the same moment: one makes it, the other waits
  // for the lock and joins it.
  let start = Date.now();
  const [a, b] = await Promise.all([holdInChild(t, dir), holdInChild(t, dir)]);
  t.diagnostic(`two processes started at once: both had it ${Date.now() - start} ms later`);
  assert.equal(a.info.fsid, b.info.fsid, 'one cluster');
  assert.deepEqual([a.info.reused, b.info.reused].sort(), [false, true], 'made once, joined once');

  start = Date.now();
  const first = await startCephCluster(t, { dir, lingerMs: 0 });
  t.diagnostic(`reused in ${Date.now() - start} ms`);
  assert.equal(first.reused, true);
  const fsid = async (c: CephCluster) => (await c.ceph(['fsid'])).stdout.trim();
  const fsid1 = await fsid(first);
  assert.equal(fsid1, a.info.fsid, 'the same cluster');
  assert.equal((await readdir(join(dir, 'leases'))).length, 3, 'three processes hold leases');
  // Test processes killed outright: their leases go with them, the cluster stays for this one.
  for (const h of [a, b]) {
    h.child.kill('SIGKILL');
    await new Promise((r) => h.child.once('close', r));
  }
  assert.equal(await liveLeases(dir), 1, 'only this process still holds a lease');
  assert.equal(await fsid(first), fsid1, 'still serving');

  // A crash: every daemon killed outright, pid files left behind.
  const pids = await Promise.all(DAEMONS.map((d) => first.pid(d)));
  for (const pid of pids) process.kill(pid!, 'SIGKILL');
  await waitFor(
    'daemons gone',
    async () => (await Promise.all(DAEMONS.map((d) => first.pid(d)))).every((p) => !p),
    10_000,
  );

  start = Date.now();
  const second = await startCephCluster(t, { dir, lingerMs: 0 });
  t.diagnostic(`stale cluster cleaned and made anew in ${Date.now() - start} ms`);
  assert.equal(second.reused, false);
  assert.notEqual(await fsid(second), fsid1, 'a new cluster');
  const pool = await second.createPool(uniq('p'));
  assert.deepEqual((await second.rbd(['ls', pool])).stdout.trim(), '', 'it serves rbd');

  await first.stop();
  await second.stop();
  // No lease is left and the linger is 0: the reaper stops the daemons and removes the directory.
  const ms = await waitFor('the reaper removes the cluster', async () => !existsSync(dir), 60_000);
  t.diagnostic(`removed by the reaper ${ms} ms after the last user left`);
  const { stdout } = await exec('ps', ['-eo', 'args']);
  assert.ok(!stdout.includes(join(dir, 'ceph.conf')), 'no process of the cluster is left');
});

test('pools with quotas; images written by qemu-img and qemu-nbd; snapshots, clones (format 2), diffs', async (t) => {
  const ceph = await startCephCluster(t);
  const dir = await testDir(t, 'haven-t-ceph-rw');
  const pool = await ceph.createPool(uniq('rw'), { quotaBytes: GiB });
  const quota = JSON.parse((await ceph.ceph(['osd', 'pool', 'get-quota', pool, '--format', 'json'])).stdout);
  assert.equal(quota.quota_max_bytes, GiB);

  const size = 64 * MiB;
  const model = await DiskModel.create(join(dir, 'model.raw'), size);
  await model.writePattern(11, 300);
  await ceph.rbd(['create', `${pool}/base`, '--size', '64M']);
  await writeImage(model.path, ceph.qemuRbd(pool, 'base'));
  await ceph.rbd(['export', `${pool}/base`, join(dir, 'base.raw')]);
  assert.deepEqual(
    (await checkPatternInFile(join(dir, 'base.raw'), 11, 300)).bad,
    [],
    'rbd export reads what qemu-img wrote',
  );

  // A clone of an unprotected snapshot: clone format 2.
  await ceph.rbd(['snap', 'create', `${pool}/base@g1`]);
  await ceph.rbd(['clone', `${pool}/base@g1`, `${pool}/drill`]);
  const info = JSON.parse((await ceph.rbd(['info', `${pool}/drill`, '--format', 'json'])).stdout);
  assert.equal(info.parent.image, 'base');
  assert.equal(info.parent.snapshot, 'g1');
  assert.ok(info.op_features.includes('clone-child'), 'a format 2 clone');
  const snaps = JSON.parse((await ceph.rbd(['snap', 'ls', `${pool}/base`, '--format', 'json'])).stdout);
  assert.equal(snaps[0].protected, 'false', 'the snapshot was never protected');

  // Written through qemu-nbd: the clone changes, the snapshot does not.
  const nbd = await serveNbd(t, dir, ceph.qemuRbd(pool, 'drill'), 'drill');
  const w = await qemuIo(nbd.uri, ['write -P 0x5a 0 1M', 'flush']);
  assert.equal(w.code, 0, w.stderr);
  const r = await qemuIo(nbd.uri, ['read -P 0x5a 0 1M']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /Pattern verification failed/);
  await ceph.rbd(['export', `${pool}/base@g1`, join(dir, 'g1.raw')]);
  assert.deepEqual((await checkPatternInFile(join(dir, 'g1.raw'), 11, 300)).bad, []);
  const drill = await attempt(
    'qemu-io',
    ['-f', 'raw', '-c', 'read -P 0x5a 0 1M', ceph.qemuRbd(pool, 'drill')],
    60_000,
  );
  assert.equal(drill.code, 0, drill.stderr);
  assert.doesNotMatch(drill.stdout, /Pattern verification failed/, 'qemu-io reads the clone through librbd');

  // The rbd diff stream: export-diff up to g1, import-diff into a new image, same bytes and snapshot.
  await ceph.rbd(['export-diff', `${pool}/base@g1`, join(dir, 'g1.diff')]);
  await ceph.rbd(['create', `${pool}/copy`, '--size', '64M']);
  await ceph.rbd(['import-diff', join(dir, 'g1.diff'), `${pool}/copy`]);
  await ceph.rbd(['export', `${pool}/copy@g1`, join(dir, 'copy.raw')]);
  assert.deepEqual(await readFile(join(dir, 'copy.raw')), await readFile(join(dir, 'g1.raw')));
});

test('a pool over its quota: writers wait until the quota is raised, or until rados_osd_op_timeout', async (t) => {
  const ceph = await startCephCluster(t);
  const dir = await testDir(t, 'haven-t-ceph-quota');
  const pool = await ceph.createPool(uniq('quota'), { quotaBytes: 32 * MiB });
  await ceph.rbd(['create', `${pool}/img`, '--size', '128M']);
  await ceph.rbd(['create', `${pool}/held`, '--size', '16M']);
  await ceph.rbd(['create', `${pool}/fresh`, '--size', '16M']);
  // Opened before the pool fills, as a running replication would hold them: `held` has written
  // once (so it holds the image's exclusive lock), `fresh` has not.
  const timeout5 = { settings: { rados_osd_op_timeout: 5 } };
  const held = await serveNbd(t, dir, ceph.qemuRbd(pool, 'held', timeout5), 'held');
  const fresh = await serveNbd(t, dir, ceph.qemuRbd(pool, 'fresh', timeout5), 'fresh');
  const first = await qemuIo(held.uri, ['write -P 0x11 0 64k']);
  assert.equal(first.code, 0, first.stderr);
  const data = join(dir, 'data.raw');
  await exec('dd', ['if=/dev/urandom', `of=${data}`, 'bs=1M', 'count=64', 'status=none']);

  // Usage reaches the monitor through the manager's stats a little later: the quota is not a
  // hard limit for writes already under way.
  const fill = await attempt(
    'qemu-img',
    ['convert', '-n', '-f', 'raw', '-O', 'raw', data, ceph.qemuRbd(pool, 'img')],
    120_000,
  );
  assert.equal(fill.code, 0, `64 MiB into a 32 MiB quota completes: ${fill.stderr}`);
  const lag = await waitFor(
    'the pool is flagged full',
    async () => (await ceph.poolFlags(pool)).includes('full_quota'),
    60_000,
  );
  t.diagnostic(`64 MiB written into a 32 MiB quota; flagged full_quota ${lag} ms after the writer finished`);
  const health = JSON.parse((await ceph.ceph(['health', '--format', 'json'])).stdout) as Health;
  assert.ok(health.checks.POOL_FULL, 'health: POOL_FULL');

  // Defaults: no rados_osd_op_timeout, so a write waits (librados pauses it) indefinitely.
  const waits = await attempt('rbd', rbdArgs(ceph, {}, ['create', `${pool}/new`, '--size', '1M']), 8_000);
  report(t, 'rbd create (defaults)', waits);
  assert.equal(waits.hung, true, 'rbd create waits');

  const opTimeout = { 'rados-osd-op-timeout': 5 };
  const create = await attempt(
    'rbd',
    rbdArgs(ceph, opTimeout, ['create', `${pool}/new`, '--size', '1M']),
    60_000,
  );
  report(t, 'rbd create, rados_osd_op_timeout=5', create);
  assert.equal(create.code, 110);
  assert.match(create.stderr, /rbd: create error: \(110\) Connection timed out/);

  const imp = await attempt('rbd', rbdArgs(ceph, opTimeout, ['import', data, `${pool}/imported`]), 60_000);
  report(t, 'rbd import, rados_osd_op_timeout=5', imp);
  assert.equal(imp.code, 110);
  assert.match(imp.stderr, /rbd: import failed: \(110\) Connection timed out/);

  // Opening an image for writing registers a watch on its header: a write, so it waits too.
  const write = await attempt(
    'qemu-img',
    ['convert', '-n', '-f', 'raw', '-O', 'raw', data, ceph.qemuRbd(pool, 'img', timeout5)],
    60_000,
  );
  report(t, 'qemu-img convert into the full pool, rados_osd_op_timeout=5', write);
  assert.equal(write.code, 1);
  assert.match(write.stderr, /error reading header from img: Connection timed out/);

  // An open image holding its lock: the write times out; qemu-nbd answers NBD's EINVAL (it maps
  // ETIMEDOUT to no NBD error of its own).
  const heldWrite = await qemuIo(held.uri, ['write -P 0x22 64k 64k'], 60_000);
  report(t, 'write through qemu-nbd, image lock held, rados_osd_op_timeout=5', heldWrite);
  assert.match(heldWrite.stdout + heldWrite.stderr, /write failed: Invalid argument/);
  assert.ok(heldWrite.ms >= 4_000 && heldWrite.ms < 30_000, `failed after the timeout (${heldWrite.ms} ms)`);
  assert.match(
    held.stderr(),
    /rbd request failed: cmd 1 offset 65536 bytes 65536 .*task\.ret -110 \(Connection timed out\)/,
  );
  // Not yet holding it: librbd retries taking the lock, and no op timeout ends that.
  const freshWrite = await qemuIo(fresh.uri, ['write -P 0x22 0 64k'], 20_000);
  report(t, 'write through qemu-nbd, image lock not yet taken, rados_osd_op_timeout=5', freshWrite);
  assert.equal(
    freshWrite.hung,
    true,
    'the first write of an open image waits for the lock beyond the op timeout',
  );

  // Reading: QEMU's rbd driver always opens images read-write (a header watch: a write), and
  // librbd updates an image's access time when it closes it (a write) unless told not to.
  const qemuRead = await attempt(
    'qemu-img',
    ['convert', '-f', 'raw', '-O', 'raw', ceph.qemuRbd(pool, 'img', timeout5), join(dir, 'q.raw')],
    60_000,
  );
  report(t, 'qemu-img convert out of the full pool, rados_osd_op_timeout=5', qemuRead);
  assert.equal(qemuRead.code, 1);
  assert.match(qemuRead.stderr, /error reading header from img: Connection timed out/);
  const exported = await attempt(
    'rbd',
    rbdArgs(ceph, {}, ['export', `${pool}/img`, join(dir, 'e.raw')]),
    10_000,
  );
  // Whether this one waits depends on when the image's access time was last written
  // (rbd_atime_update_interval, 60 s by default): it waits in closing the image only when the
  // interval has passed, which a loaded machine decides. Recorded, not asserted; the reader that
  // must not wait is the one below.
  report(t, 'rbd export out of the full pool (defaults)', exported);
  const noAtime = { 'rbd-atime-update-interval': 0 };
  const read = await attempt(
    'rbd',
    rbdArgs(ceph, noAtime, ['export', `${pool}/img`, join(dir, 'back.raw')]),
    60_000,
  );
  report(t, 'rbd export out of the full pool, rbd_atime_update_interval=0', read);
  assert.equal(read.code, 0);
  const back = await readFile(join(dir, 'back.raw'));
  assert.ok(
    back.subarray(0, 64 * MiB).equals(await readFile(data)),
    'the data written before the quota filled',
  );

  // A writer left waiting completes once the quota is raised.
  const waiting = attempt('rbd', rbdArgs(ceph, {}, ['create', `${pool}/late`, '--size', '1M']), 120_000);
  await new Promise((r) => setTimeout(r, 2000));
  const raised = Date.now();
  await ceph.setPoolQuota(pool, 0);
  const done = await waiting;
  t.diagnostic(`a waiting rbd create completed ${Date.now() - raised} ms after the quota was removed`);
  assert.equal(done.code, 0, done.stderr);
  assert.equal((await ceph.poolFlags(pool)).includes('full_quota'), false);
  for (const nbd of [held, fresh]) {
    const io = await qemuIo(nbd.uri, ['write -P 0x33 0 1M', 'flush', 'read -P 0x33 0 1M'], 60_000);
    assert.equal(io.code, 0, io.stderr);
    assert.doesNotMatch(io.stdout, /failed/, 'a qemu-nbd opened before writes again');
  }
});

describe('an exclusive cluster whose daemons are stopped and restarted', () => {
  let ceph: CephCluster;
  let pool: string;
  const seed = 31;

  before(async () => {
    const start = Date.now();
    ceph = await startCephCluster(undefined, { exclusive: true, osdBytes: 4 * GiB });
    process.stderr.write(`# exclusive cluster started in ${Date.now() - start} ms\n`);
    pool = await ceph.createPool(uniq('down'));
    await ceph.rbd(['create', `${pool}/img`, '--size', '32M']);
  });
  after(() => ceph?.stop());

  test('an OSD stopped: new clients and open images wait, bounded by rados_osd_op_timeout; both recover', async (t) => {
    const dir = await testDir(t, 'haven-t-ceph-osd');
    const model = await DiskModel.create(join(dir, 'model.raw'), 32 * MiB);
    await model.writePattern(seed, 200);
    await writeImage(model.path, ceph.qemuRbd(pool, 'img'));
    const timeout5 = { settings: { rados_osd_op_timeout: 5 } };
    const nbd = await serveNbd(t, dir, ceph.qemuRbd(pool, 'img', timeout5), 'img');

    let start = Date.now();
    await ceph.stopOsd();
    t.diagnostic(`OSD stopped (SIGTERM, marked down) in ${Date.now() - start} ms`);

    const opTimeout = { 'rados-osd-op-timeout': 5 };
    const ls = await attempt('rbd', rbdArgs(ceph, {}, ['ls', pool]), 8_000);
    report(t, 'rbd ls (defaults)', ls);
    assert.equal(ls.hung, true, 'rbd ls waits for the OSD');
    const lsT = await attempt('rbd', rbdArgs(ceph, opTimeout, ['ls', pool]), 60_000);
    report(t, 'rbd ls, rados_osd_op_timeout=5', lsT);
    assert.equal(lsT.code, 110);
    assert.match(lsT.stderr, /rbd: listing images failed: \(110\) Connection timed out/);
    const infoT = await attempt('rbd', rbdArgs(ceph, opTimeout, ['info', `${pool}/img`]), 60_000);
    report(t, 'rbd info, rados_osd_op_timeout=5', infoT);
    assert.equal(infoT.code, 110);
    assert.match(infoT.stderr, /rbd: error opening image img: \(110\) Connection timed out/);
    const img = await attempt('qemu-img', ['info', ceph.qemuRbd(pool, 'img', timeout5)], 60_000);
    report(t, 'qemu-img info, rados_osd_op_timeout=5', img);
    assert.equal(img.code, 1);
    assert.match(img.stderr, /error reading header from img: Connection timed out/);
    const nbdNew = await attempt(
      'qemu-nbd',
      ['-f', 'raw', `--socket=${join(dir, 'new.sock')}`, ceph.qemuRbd(pool, 'img', timeout5)],
      60_000,
    );
    report(t, 'qemu-nbd start, rados_osd_op_timeout=5', nbdNew);
    assert.equal(nbdNew.code, 1);
    assert.match(
      nbdNew.stderr,
      /Failed to blk_new_open .*error reading header from img: Connection timed out/,
    );

    // Through qemu-nbd the read fails after four times the op timeout; qemu-nbd then drops the
    // client instead of answering with an error.
    const read = await qemuIo(nbd.uri, ['read 0 64k'], 120_000);
    report(t, 'read through a qemu-nbd opened before (rados_osd_op_timeout=5)', read);
    assert.match(read.stdout + read.stderr, /read failed: Input\/output error/);
    assert.ok(
      read.ms >= 4_000 && read.ms < 60_000,
      `the NBD read failed after a bounded time (${read.ms} ms)`,
    );
    assert.match(
      nbd.stderr(),
      /Disconnect client, due to: Failed to send reply: reading from file failed: Connection timed out/,
    );

    // A reader without a timeout waits, and finishes once the OSD is back.
    const waiting = attempt(
      'rbd',
      rbdArgs(ceph, {}, ['export', `${pool}/img`, join(dir, 'waited.raw')]),
      180_000,
    );
    await new Promise((r) => setTimeout(r, 2000));
    start = Date.now();
    await ceph.startOsd();
    t.diagnostic(`OSD started, up and its placement groups active in ${Date.now() - start} ms`);
    const done = await waiting;
    t.diagnostic(`the waiting rbd export finished ${done.ms} ms after it began`);
    assert.equal(done.code, 0, done.stderr);
    assert.deepEqual((await checkPatternInFile(join(dir, 'waited.raw'), seed, 200)).bad, []);
    const again = await qemuIo(nbd.uri, ['read 0 64k']);
    assert.equal(again.code, 0, `the qemu-nbd opened before reads again: ${again.stderr}`);
  });

  test('the monitor stopped: open images keep working; new clients wait for client_mount_timeout', async (t) => {
    const dir = await testDir(t, 'haven-t-ceph-mon');
    await ceph.rbd(['create', `${pool}/live`, '--size', '32M']);
    const nbd = await serveNbd(t, dir, ceph.qemuRbd(pool, 'live'), 'live');
    const first = await qemuIo(nbd.uri, ['write -P 0x66 16M 64k']);
    assert.equal(first.code, 0, first.stderr);
    // A writer that died holding an image's lock: the next writer must blocklist it, which is
    // a monitor command.
    await ceph.rbd(['create', `${pool}/orphan`, '--size', '16M']);
    const dead = await serveNbd(t, dir, ceph.qemuRbd(pool, 'orphan'), 'dead');
    assert.equal((await qemuIo(dead.uri, ['write -P 0x44 0 64k'])).code, 0);
    await dead.kill();
    const heir = await serveNbd(t, dir, ceph.qemuRbd(pool, 'orphan'), 'heir');

    let start = Date.now();
    await ceph.stopMon();
    t.diagnostic(`monitor stopped in ${Date.now() - start} ms`);

    // I/O goes to the OSD directly: an open image needs no monitor.
    const io = await qemuIo(nbd.uri, ['write -P 0x77 16M 1M', 'flush', 'read -P 0x77 16M 1M'], 60_000);
    assert.equal(io.code, 0, io.stderr);
    assert.doesNotMatch(io.stdout, /failed/, 'reads and writes through the open image go on');
    let heirDone = false;
    const orphan = attempt('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 64k', heir.uri], 180_000).then(
      (a) => {
        heirDone = true;
        return a;
      },
    );

    const ls = await attempt('rbd', rbdArgs(ceph, {}, ['ls', pool]), 8_000);
    report(t, 'rbd ls (defaults: client_mount_timeout 300)', ls);
    assert.equal(ls.hung, true);
    const monOp = await attempt('rbd', rbdArgs(ceph, { 'rados-mon-op-timeout': 3 }, ['ls', pool]), 10_000);
    report(t, 'rbd ls, rados_mon_op_timeout=3 (does not bound connecting)', monOp);
    assert.equal(monOp.hung, true);
    const lsT = await attempt('rbd', rbdArgs(ceph, { 'client-mount-timeout': 5 }, ['ls', pool]), 60_000);
    report(t, 'rbd ls, client_mount_timeout=5', lsT);
    assert.equal(lsT.code, 110);
    assert.match(lsT.stderr, /monclient\(hunting\): authenticate timed out after 5/);
    assert.match(lsT.stderr, /rbd: couldn't connect to the cluster!/);
    const mount5 = { settings: { client_mount_timeout: 5 } };
    const img = await attempt('qemu-img', ['info', ceph.qemuRbd(pool, 'img', mount5)], 60_000);
    report(t, 'qemu-img info, client_mount_timeout=5', img);
    assert.equal(img.code, 1);
    assert.match(img.stderr, /error connecting: Connection timed out/);
    const nbdNew = await attempt(
      'qemu-nbd',
      ['-f', 'raw', `--socket=${join(dir, 'new.sock')}`, ceph.qemuRbd(pool, 'img', mount5)],
      60_000,
    );
    report(t, 'qemu-nbd start, client_mount_timeout=5', nbdNew);
    assert.equal(nbdNew.code, 1);
    assert.match(nbdNew.stderr, /error connecting: Connection timed out/);
    const cli = await attempt('ceph', ['-c', ceph.conf, '--connect-timeout', '5', 'status'], 60_000);
    report(t, 'ceph status --connect-timeout 5', cli);
    assert.notEqual(cli.code, 0);

    assert.equal(heirDone, false, 'the write after a dead writer waits while the monitor is down');
    start = Date.now();
    await ceph.startMon();
    t.diagnostic(`monitor started and answering in ${Date.now() - start} ms`);
    const heirWrite = await orphan;
    report(t, 'write after a dead writer held the lock, started while the monitor was down', heirWrite);
    assert.equal(heirWrite.code, 0, 'it completes once the monitor can blocklist the dead writer');
    assert.doesNotMatch(heirWrite.stdout, /failed/);
    const blocklist = await ceph.ceph(['osd', 'blocklist', 'ls']);
    assert.match(blocklist.stdout, /^127\.0\.0\.1:0\/\d+ /m, 'the dead writer is blocklisted');
    assert.equal((await ceph.rbd(['ls', pool])).stdout.trim(), 'img\nlive\norphan');
    await ceph.rbd(['export', `${pool}/img`, join(dir, 'after.raw')]);
    assert.deepEqual((await checkPatternInFile(join(dir, 'after.raw'), seed, 200)).bad, [], 'data intact');
  });
});

test('a TCG guest reads and writes an RBD image through libvirt with a ceph secret', async (t) => {
  const ceph = await startCephCluster(t);
  const dir = await testDir(t, 'haven-t-ceph-guest');
  const pool = await ceph.createPool(uniq('guest'));
  // A user limited to this pool, as a DR site would give Haven.
  const user = await ceph.createUser(uniq('user'), { mon: 'profile rbd', osd: `profile rbd pool=${pool}` });
  const model = await DiskModel.create(join(dir, 'model.raw'), 64 * MiB);
  await model.writePattern(21, 300);
  await ceph.rbd(['create', `${pool}/disk`, '--size', '64M']);
  await writeImage(model.path, ceph.qemuRbd(pool, 'disk', { user }));

  const secret = await defineCephSecret(t, user.name, user.key);
  const disk = rbdDiskXml(ceph, { pool, image: 'disk', userId: user.id, secret, target: 'vda' });
  const start = Date.now();
  const guest = await createTestGuest(t, { prefix: 'haven-t-ceph', disks: [], networkDisks: [disk] });
  t.diagnostic(`guest booted from rbd in ${Date.now() - start} ms`);
  assert.match(guest.xml, /protocol='rbd'/);
  assert.equal(await guest.verifyPattern('vda', 21, 300), 'OK', 'the guest reads what qemu-img wrote');
  await guest.writePattern('vda', 22, 100);
  assert.equal(await guest.command('sync'), 'ok');
  await ceph.rbd(['export', `${pool}/disk`, join(dir, 'after.raw')]);
  assert.deepEqual(
    (await checkPatternInFile(join(dir, 'after.raw'), 22, 100)).bad,
    [],
    'the guest wrote to the image',
  );
  await guest.destroy();
  await reportMemory(t, ceph);
});
