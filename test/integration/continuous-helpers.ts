/**
 * What the continuous tests (issue 15) share: the store as a test looks into it while Haven
 * writes it, the two-disk guest running the sequence-numbered writer's checker at boot, and
 * restoring, activating and drilling what the store holds.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { ActivationReport, ActivationResult, RestoreResult } from '../../src/recovery/index.ts';
import { type FsStore, openFsStore } from '../../src/store/index.ts';
import type { JournalPoint, SegmentRecord, ServerManifest, VerifyReport } from '../../src/store/types.ts';
import { createTestGuest, type TestGuest } from '../fixtures/guest/index.ts';
import { checkSeqPrefix, fileReader, type SeqGeometry } from '../fixtures/guest/seq.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { type HavenEnv, type HavenResult, havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { waitFor } from './jobs-helpers.ts';
import { destroyDomainsLike, guestDefinitions } from './recovery-helpers.ts';

/**
 * The resilience tests' guest and writer: two disks of `diskMiB`, seqw writing blocks of
 * `block` at `rate` bytes/s while protected (256 KiB/s: four 64 KiB blocks a second over both).
 */
export const SEQ_RUN = { diskMiB: 16, block: 65536, rate: 256 * 1024 } as const;

/** `fn` on the store, opened for it and closed after; null while there is no store yet. */
export async function inStore<T>(store: string, fn: (s: FsStore) => Promise<T>): Promise<T | null> {
  const s = await openFsStore(store).catch(() => null);
  if (!s) return null;
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

export async function newestPoint(store: string, server: string): Promise<JournalPoint | undefined> {
  return (await inStore(store, (s) => s.journalInfo(server)))?.newest ?? undefined;
}

export async function storedManifest(store: string, server: string): Promise<ServerManifest | null> {
  return inStore(store, (s) => s.manifest(server));
}

/** Waits for a point taken more than `marginMs` after `after` (ms since the epoch). */
export function pointAfter(
  store: string,
  server: string,
  after: number,
  what: string,
  o: { marginMs?: number; timeoutMs?: number } = {},
): Promise<JournalPoint> {
  return waitFor(
    what,
    async () => {
      const n = await newestPoint(store, server);
      return n && Date.parse(n.takenAt) > after + (o.marginMs ?? 200) ? n : undefined;
    },
    o.timeoutMs ?? 60_000,
    500,
  );
}

/**
 * A test guest with two disks of `sizeMiB` whose copies check the writer's prefix when they
 * boot (workload seq-check); destroyed, with every domain named after it, when the test ends.
 */
export async function seqGuest(t: TestContext, prefix: string, sizeMiB: number): Promise<TestGuest> {
  const guest = await createTestGuest(t, { prefix, disks: [{ sizeMiB }, { sizeMiB }] });
  t.after(() => destroyDomainsLike(guest.name));
  await guest.setWorkload({ name: 'seq-check', disks: ['vda', 'vdb'] });
  return guest;
}

/**
 * A test directory, a seqGuest, and Haven's environment with a configuration defining the
 * guest's DR settings: what a continuous test starts from. `store` is where it protects to.
 */
export async function seqSetup(
  t: TestContext,
  prefix: string,
  sizeMiB: number,
): Promise<{ dir: string; guest: TestGuest; h: HavenEnv; store: string; server: string }> {
  const dir = await testDir(t, prefix);
  const guest = await seqGuest(t, prefix, sizeMiB);
  const config = join(dir, 'haven.yaml');
  await writeFile(config, guestDefinitions(guest));
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  return { dir, guest, h, store: join(dir, 'store'), server: guest.name };
}

/** `haven restore --at` into `to` (not defined, unless `extra` says otherwise): the result. */
export function restoreAt(
  h: HavenEnv,
  server: string,
  store: string,
  at: string,
  to: string,
  extra: string[] = ['--no-define'],
): Promise<RestoreResult> {
  return havenJson<RestoreResult>(h, ['restore', server, '--store', store, '--at', at, '--to', to, ...extra]);
}

/** The journal's points as `haven images --points` lists them. */
export async function listPoints(h: HavenEnv, server: string, store: string): Promise<JournalPoint[]> {
  const [listed] = await havenJson<{ points?: JournalPoint[] }[]>(h, [
    'images',
    server,
    '--store',
    store,
    '--points',
  ]);
  return listed?.points ?? [];
}

/** `haven activate --at` under another domain name (gone when the test ends): the server's result. */
export async function activateAt(
  t: TestContext,
  h: HavenEnv,
  server: string,
  store: string,
  at: string,
  name: string,
): Promise<ActivationResult> {
  const report = await havenJson<ActivationReport>(h, [
    'activate',
    server,
    '--store',
    store,
    '--at',
    at,
    '--name',
    name,
  ]);
  t.after(() => destroyDomainsLike(name));
  const result = report.servers[0]!;
  assert.equal(result.status, 'running', JSON.stringify(result));
  return result;
}

/**
 * A drill of `server` (`select`: `--generation K` or `--at P`) whose guest must print the seq
 * checker's verdict `last`; asserts the pass and returns what was booted.
 */
export async function drillSeq(
  h: HavenEnv,
  server: string,
  store: string,
  select: string[],
  last: number,
): Promise<{ id: string }> {
  const marker = `HAVEN seq check OK last=${last}`;
  const args = [
    'drill',
    server,
    '--store',
    store,
    ...select,
    '--marker',
    marker,
    '--timeout',
    '3m',
    '--json',
  ];
  const drill = await runHaven(h, args);
  assert.equal(drill.code, 0, drill.stdout + drill.stderr);
  const report = JSON.parse(drill.stdout) as { results: { result: string; generation: { id: string } }[] };
  assert.equal(report.results[0]?.result, 'pass');
  return report.results[0]!.generation;
}

export interface LogLine {
  t: string;
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** The run log of the `haven protect` process (its pid is in the file's name). */
export async function protectLog(logDir: string, server: string): Promise<{ pid: number; path: string }> {
  const name = (await readdir(logDir)).find((f) => f.startsWith(`protect-${server}-`));
  const pid = Number(/-(\d+)\.log$/.exec(name ?? '')?.[1]);
  if (!name || !pid) throw new Error(`no run log of protect ${server} in ${logDir}`);
  return { pid, path: join(logDir, name) };
}

export async function logLines(path: string): Promise<LogLine[]> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** The pid of `parent`'s child running `haven receive --stdio --store <store>`, if any. */
export async function receiverOf(parent: number, store: string): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = await readFile(`/proc/${entry}/status`, 'utf8');
      if (Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1]) !== parent) continue;
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (argv.includes('receive') && argv.includes(store)) return Number(entry);
    } catch {
      // The process ended while we looked.
    }
  }
  return undefined;
}

/**
 * The journal's base point and segments, oldest first, as pit.json records them (the store's
 * format, docs/continuous.md): each with the bytes of data it carries.
 */
export async function segments(store: string, server: string): Promise<SegmentRecord[]> {
  const pit = JSON.parse(
    await readFile(join(store, '.haven', 'servers', server, 'pit', 'pit.json'), 'utf8'),
  ) as { base: SegmentRecord | null; segments: SegmentRecord[] };
  return [...(pit.base ? [pit.base] : []), ...pit.segments];
}

/**
 * seqw fills both disks once, flat out, then writes at `rate` bytes/s in blocks of `block`:
 * every chunk is then allocated before protection begins, so a full copy would send both disks
 * whole, and anything much smaller is a partial resync.
 */
export async function fillThenWrite(guest: TestGuest, sizeMiB: number, block: number, rate: number) {
  const slots = (sizeMiB * 1024 * 1024) / block;
  await guest.seqStart({ rate: 0, block, nonce: 21, disks: ['vda', 'vdb'] });
  await waitFor(
    'the writer to fill both disks',
    async () => ((await guest.seqAcked())?.acked ?? 0) >= 2 * slots,
    120_000,
    500,
  );
  await guest.seqStop();
  await guest.seqStart({ rate, block, nonce: 0, disks: ['vda', 'vdb'] });
}

/**
 * Restores point `at` into `dir/name` and checks that its two disks of `sizeMiB` hold a prefix
 * of seqw's writes (asserted): the prefix's last write and the run's geometry.
 */
export async function pointPrefix(
  h: HavenEnv,
  server: string,
  store: string,
  o: { dir: string; sizeMiB: number },
  at: string,
  name: string,
): Promise<{ last: number; geometry: SeqGeometry }> {
  const size = o.sizeMiB * 1024 * 1024;
  const res = await restoreAt(h, server, store, at, join(o.dir, name));
  const v = await checkSeqPrefix(fileReader(res.disks.map((d) => d.path)), [size, size]);
  assert.ok(v.ok, `point ${at}: ${v.ok ? '' : v.problem}`);
  return { last: v.last, geometry: v.geometry as SeqGeometry };
}

/**
 * `haven protect <server> --to <store> --continuous --interval 1s --journal 30m --json` in the
 * background, as the resilience tests run it: `stop()` sends SIGTERM (docs/continuous.md,
 * "Stopping"), `result` is what the process printed and its exit code, `exited()` whether it
 * has ended (by itself, it must not).
 */
export function protectContinuous(
  h: HavenEnv,
  server: string,
  store: string,
): { result: Promise<HavenResult>; stop: () => void; exited: () => boolean } {
  let stop = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  let exited = false;
  const result = runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--journal', '30m', '--json'],
    { killOn: stopped, killSignal: 'SIGTERM', timeoutMs: 600_000 },
  ).then((r) => {
    exited = true;
    return r;
  });
  return { result, stop, exited: () => exited };
}

/**
 * After an event at `from` (ms) and the guest writing again from `writing` on: points keep
 * coming, the same process goes on, and no lane resyncs by checksum or full copy (its log).
 * Returns the largest segment (data bytes) taken since `from`.
 */
export async function pointsGoOnByBitmap(
  store: string,
  server: string,
  o: { logPath: string; from: number; writing: number; exited: () => boolean },
  what: string,
): Promise<number> {
  await pointAfter(store, server, o.writing, `a point after ${what}`, { timeoutMs: 90_000 });
  await pointAfter(store, server, o.writing + 3000, `points go on after ${what}`, { timeoutMs: 60_000 });
  assert.equal(o.exited(), false, `the protecting process goes on through ${what}`);
  const since = (await logLines(o.logPath)).filter((l) => Date.parse(l.t) >= o.from);
  const resyncs = since.filter(
    (l) => /bitmaps cannot be used/.test(l.msg) || (l.msg === 'connected' && l.decision !== 'bitmap'),
  );
  assert.deepEqual(resyncs, [], `no checksum resync or full copy after ${what}`);
  const taken = (await segments(store, server)).filter((s) => Date.parse(s.takenAt) > o.from);
  return Math.max(...taken.map((s) => s.dataBytes));
}

/** `haven verify --store`: every point of the journal checked and sound; the points, oldest first. */
export async function verifyEveryPoint(h: HavenEnv, store: string, server: string): Promise<SegmentRecord[]> {
  const verified = await havenJson<VerifyReport>(h, ['verify', '--store', store]);
  assert.equal(verified.ok, true, JSON.stringify(verified.problems));
  const points = (await segments(store, server)).filter((s) => s.consistent);
  assert.equal(verified.checkedPoints, points.length, 'every point checked');
  return points;
}

/**
 * Waits until protection is steady (a first point, then another more than 2 s after it) and
 * returns the protecting process's pid and run log (under `dir`/log).
 */
export async function steadyProtection(
  store: string,
  server: string,
  dir: string,
): Promise<{ pid: number; path: string }> {
  const first = await pointAfter(store, server, 0, 'a first point', { timeoutMs: 240_000 });
  await pointAfter(store, server, Date.parse(first.takenAt) + 2000, 'steady points');
  return protectLog(join(dir, 'log'), server);
}
