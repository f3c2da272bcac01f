/**
 * `haven host medium` (issue 16, docs/host-recovery.md step 2) with the real CLI and e2fsprogs:
 * from a host store built as `haven host backup` leaves it (HostStore.beginFile, rescue media and
 * real gzip tar archives), the backup medium written to a file is an ext4 filesystem labelled
 * HAVEN-BACKUP whose haven/backup.tar.gz, read back with debugfs, is the stored archive byte for
 * byte; --iso writes the rescue ISO as stored. Refusals write nothing: a damaged archive (its
 * store code), an existing file without --force, a dry run, a mounted loop device, a device too
 * small. The rescue "ISO" here is random bytes: the command copies it as it is and never boots
 * it (host-recovery.test.ts boots real media).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { digest } from '../../src/core/digest.ts';
import type { HostMediumReport } from '../../src/hosts/index.ts';
import { createFsStore } from '../../src/store/fs/fs-store.ts';
import { type HostFileMeta, HostStore } from '../../src/store/host/index.ts';
import { hostFacts } from '../../src/store/host/test-support/facts.ts';
import { TEST_ROOT } from '../fixtures/guest/index.ts';
import { havenEnv, runHaven } from '../helpers/haven.ts';

const at = '2026-12-01T00:00:00.000Z';
const MiB = 1024 * 1024;

async function put(store: HostStore, meta: HostFileMeta, data: Buffer) {
  const w = await store.beginFile(meta);
  await w.write(0, data);
  return w.finish({ size: data.length, digest: digest('blake3', data).toString('hex') });
}

/** A real gzip tar of a small tree, as ReaR's archive is (with some incompressible bytes). */
async function tarball(dir: string, name: string): Promise<Buffer> {
  const tree = join(dir, `tree-${name}`);
  await mkdir(join(tree, 'etc'), { recursive: true });
  await writeFile(join(tree, 'etc', 'hostname'), `${name}\n`);
  await writeFile(join(tree, 'etc', 'random.bin'), randomBytes(MiB + 12345));
  const out = join(dir, `${name}.tar.gz`);
  execFileSync('tar', ['-czf', out, '-C', tree, '.']);
  return readFile(out);
}

interface Fixture {
  dir: string;
  store: string;
  iso: Buffer;
  newest: Buffer;
  older: Buffer;
  /** `haven host medium node1 --store STORE …` */
  medium: (...args: string[]) => ReturnType<typeof runHaven>;
}

async function fixture(t: TestContext, prefix: string): Promise<Fixture> {
  await mkdir(TEST_ROOT, { recursive: true });
  const dir = await mkdtemp(join(TEST_ROOT, `haven-t-hmed-${prefix}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fs = await createFsStore(join(dir, 'store'));
  await fs.close();
  const hosts = new HostStore(fs.location, fs.descriptor);
  const iso = randomBytes(3 * MiB + 2048);
  const rescue = await put(
    hosts,
    { host: 'node1', kind: 'rescue', copies: 3, takenAt: at, facts: hostFacts() },
    iso,
  );
  const backup = (minutes: number): HostFileMeta => ({
    host: 'node1',
    kind: 'backup',
    copies: 3,
    takenAt: new Date(Date.parse(at) + minutes * 60_000).toISOString(),
    rescueId: rescue.id,
    excludes: [],
  });
  const older = await tarball(dir, 'older');
  const newest = await tarball(dir, 'newest');
  await put(hosts, backup(1), older);
  await put(hosts, backup(2), newest);
  const h = await havenEnv(dir);
  const medium = (...args: string[]) =>
    runHaven(h, ['host', 'medium', 'node1', '--store', fs.location, ...args]);
  return { dir, store: fs.location, iso, newest, older, medium };
}

/** The label and the archive inside a medium (file or device), read with e2fsprogs. */
function readMedium(path: string, dir: string): { label: string; archive: Buffer } {
  const label = execFileSync('e2label', [path]).toString().trim();
  const header = execFileSync('dumpe2fs', ['-h', path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  assert.match(header, new RegExp(`Filesystem volume name:\\s+${label}`));
  const out = join(dir, `read-back-${randomBytes(3).toString('hex')}`);
  execFileSync('debugfs', ['-R', `dump haven/backup.tar.gz ${out}`, path], { stdio: 'ignore' });
  return { label, archive: readFileSync(out) };
}

test('writes the newest backup medium and its rescue ISO; the archive inside is the stored one', async (t) => {
  const f = await fixture(t, 'ok');
  const output = join(f.dir, 'node1-backup.img');
  const iso = join(f.dir, 'node1-rescue.iso');
  const r = await f.medium('--to', output, '--iso', iso);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /backup medium of node1 .*HAVEN-BACKUP .*backup _1/);
  assert.match(r.stdout, /rescue ISO _1/);
  assert.match(r.stdout, /matched their blake3 digests/);
  const medium = readMedium(output, f.dir);
  assert.equal(medium.label, 'HAVEN-BACKUP');
  assert.ok(
    medium.archive.equals(f.newest),
    'the archive on the medium is the newest stored one, byte for byte',
  );
  assert.ok((await readFile(iso)).equals(f.iso), 'the ISO is the stored rescue media, byte for byte');
  // The archive is a gzip tar that lists as one.
  assert.match(execFileSync('tar', ['-tzf', '-'], { input: medium.archive }).toString(), /etc\/hostname/);

  const again = join(f.dir, 'again.img');
  const j = await f.medium('--to', again, '--json');
  assert.equal(j.code, 0, j.stderr);
  const report = JSON.parse(j.stdout) as HostMediumReport;
  assert.equal(report.digestChecked, true);
  assert.equal(report.backup.seq, 1);
  assert.equal(report.backup.bytes, f.newest.length);
  assert.equal(report.iso, null);
  assert.equal(report.medium.bytes, (await stat(again)).size);
});

test('--generation 2 writes the older archive', async (t) => {
  const f = await fixture(t, 'gen');
  const output = join(f.dir, 'older.img');
  const r = await f.medium('--to', output, '--generation', '2');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /backup _2/);
  assert.ok(readMedium(output, f.dir).archive.equals(f.older), 'the older archive, byte for byte');
  const none = await f.medium('--to', join(f.dir, 'x.img'), '--generation', '3');
  assert.equal(none.code, 4);
  assert.match(none.stderr, /HOST_GENERATION_NOT_FOUND/);
  assert.equal(existsSync(join(f.dir, 'x.img')), false);
});

test('refusals write nothing: damaged archive, existing file without --force, dry run, path in the store', async (t) => {
  const f = await fixture(t, 'refuse');
  const medium = (output: string, ...more: string[]) => f.medium('--to', output, ...more);

  const planned = join(f.dir, 'planned.img');
  const dry = await medium(planned, '--iso', join(f.dir, 'planned.iso'), '--dry-run', '--json');
  assert.equal(dry.code, 0, dry.stderr);
  const plan = JSON.parse(dry.stdout) as HostMediumReport;
  assert.equal(plan.dryRun, true);
  assert.equal(plan.backup.seq, 1);
  assert.equal(plan.iso?.bytes, f.iso.length);
  assert.equal(
    existsSync(planned) || existsSync(join(f.dir, 'planned.iso')),
    false,
    'a dry run writes nothing',
  );

  const existing = join(f.dir, 'existing.img');
  await writeFile(existing, 'keep me');
  const refused = await medium(existing);
  assert.equal(refused.code, 7, refused.stderr);
  assert.match(refused.stderr, /HOST_OUTPUT_EXISTS/);
  assert.match(refused.stderr, /--force/);
  assert.equal(await readFile(existing, 'utf8'), 'keep me');
  const forced = await medium(existing, '--force');
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(readMedium(existing, f.dir).label, 'HAVEN-BACKUP');

  const inStore = await medium(join(f.store, 'hosts', 'node1_backup_1.tar.gz'), '--force');
  assert.equal(inStore.code, 2, inStore.stderr);
  assert.match(inStore.stderr, /HOST_OUTPUT_INVALID/);
  assert.ok((await readFile(join(f.store, 'hosts', 'node1_backup_1.tar.gz'))).equals(f.newest));

  const fh = await open(join(f.store, 'hosts', 'node1_backup_1.tar.gz'), 'r+');
  await fh.write(Buffer.from('damage'), 0, 6, 4096);
  await fh.close();
  const damaged = join(f.dir, 'damaged.img');
  const bad = await medium(damaged, '--iso', join(f.dir, 'damaged.iso'));
  assert.equal(bad.code, 8, bad.stderr);
  assert.match(bad.stderr, /STORE_HOST_DIGEST_MISMATCH/);
  assert.match(bad.stderr, /--generation/);
  assert.equal(existsSync(damaged) || existsSync(join(f.dir, 'damaged.iso')), false, 'nothing written');
  const older = await medium(damaged, '--generation', '2');
  assert.equal(older.code, 0, older.stderr);
});

/**
 * Loop devices over sparse files, and a mount point, in a directory of their own: one hook
 * unmounts, detaches and removes them in that order (hooks run in the order they were added).
 */
async function devices(t: TestContext) {
  const dir = await mkdtemp(join(TEST_ROOT, 'haven-t-hmed-loop-'));
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const attached: string[] = [];
  let mounted = false;
  t.after(async () => {
    if (mounted) execFileSync('umount', [mnt]);
    for (const dev of attached) execFileSync('losetup', ['-d', dev]);
    await rm(dir, { recursive: true, force: true });
  });
  return {
    mnt,
    loop(name: string, mib: number): string {
      const img = join(dir, `${name}.img`);
      execFileSync('truncate', ['-s', `${mib}M`, img]);
      const dev = execFileSync('losetup', ['-f', '--show', img]).toString().trim();
      attached.push(dev);
      return dev;
    },
    mount(dev: string): void {
      execFileSync('mount', [dev, mnt]);
      mounted = true;
    },
  };
}

test('block devices: a mounted one and one too small are refused; a free one gets the medium', async (t) => {
  const f = await fixture(t, 'dev');
  const loops = await devices(t);
  const medium = (output: string) => f.medium('--to', output);

  const mounted = loops.loop('mounted', 64);
  execFileSync('mkfs.ext4', ['-q', '-L', 'IN-USE', mounted]);
  loops.mount(mounted);
  const mnt = loops.mnt;
  await writeFile(join(mnt, 'precious'), 'data');
  const busy = await medium(mounted);
  assert.equal(busy.code, 6, busy.stderr);
  assert.match(busy.stderr, /HOST_DEVICE_MOUNTED/);
  assert.match(busy.stderr, new RegExp(mnt));
  assert.equal(
    execFileSync('e2label', [mounted]).toString().trim(),
    'IN-USE',
    'the mounted device is untouched',
  );
  assert.equal(await readFile(join(mnt, 'precious'), 'utf8'), 'data');

  const small = loops.loop('small', 8);
  const tooSmall = await medium(small);
  assert.equal(tooSmall.code, 9, tooSmall.stderr);
  assert.match(tooSmall.stderr, /HOST_DEVICE_TOO_SMALL/);

  const free = loops.loop('free', 64);
  const ok = await f.medium('--to', free, '--json');
  assert.equal(ok.code, 0, ok.stderr);
  const report = JSON.parse(ok.stdout) as HostMediumReport;
  assert.equal(report.medium.device, true);
  assert.equal(report.medium.bytes, 64 * MiB);
  const written = readMedium(free, f.dir);
  assert.equal(written.label, 'HAVEN-BACKUP');
  assert.ok(written.archive.equals(f.newest));
});
