/**
 * The store conformance suite against the filesystem store on a filesystem with reflinks (XFS,
 * as an operator's RHEL-style target has, or btrfs; loop-mounted), where every rotation clones
 * the newest generation and writes only the new delta instead of replaying the deltas the oldest
 * missed (docs/design.md §4.2, last paragraph). Every crash step of the suite then exercises the cloned
 * slot. Plus what only such a filesystem shows: the images share their unchanged blocks, and no
 * committed delta is kept for replays that will not happen. One test file per filesystem.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Logger } from '../../src/core/log.ts';
import { openFsStore } from '../../src/store/fs/index.ts';
import { FsLayout } from '../../src/store/fs/layout.ts';
import { captureLog } from '../helpers/capture-log.ts';
import { fsStoreUnderTest } from './fs-sut.ts';
import { disksFor, ServerSim } from './harness.ts';
import { storeConformance } from './store-conformance.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

export type ReflinkFs = 'xfs' | 'btrfs';

/** mkfs for each: reflink on (the mkfs.xfs default since 5.1; always on btrfs). */
const MKFS: Record<ReflinkFs, string[]> = {
  xfs: ['mkfs.xfs', '-q', '-f', '-m', 'reflink=1'],
  btrfs: ['mkfs.btrfs', '-q', '-f'],
};

export function reflinkStoreSuite(fs: ReflinkFs): void {
  let mounted: Promise<string> | null = null;
  let scratchDir = '';

  /** One filesystem for every store of the calling test file. */
  function mountFs(): Promise<string> {
    mounted ??= (async () => {
      await mkdir(root, { recursive: true });
      scratchDir = await mkdtemp(join(root, `${fs}-store-`));
      const img = join(scratchDir, `${fs}.img`);
      const mnt = join(scratchDir, 'mnt');
      await mkdir(mnt);
      execFileSync('truncate', ['-s', '1G', img]);
      const [mkfs, ...args] = MKFS[fs];
      execFileSync(mkfs!, [...args, img]);
      execFileSync('mount', ['-o', 'loop', img, mnt]);
      return mnt;
    })();
    return mounted;
  }

  after(async () => {
    if (!mounted) return;
    const mnt = await mounted.catch(() => null);
    if (mnt) {
      try {
        execFileSync('umount', [mnt]);
      } catch {
        // Still busy (a killed child's files closing): detach now, the kernel finishes later.
        execFileSync('umount', ['-l', mnt]);
      }
    }
    await rm(scratchDir, { recursive: true, force: true });
  });

  async function freshStore(log?: Logger, reflinks?: boolean) {
    const dir = await mkdtemp(join(await mountFs(), 'fs-store-'));
    const store = await openFsStore(dir, {
      create: true,
      ...(log ? { log } : {}),
      ...(reflinks === undefined ? {} : { reflinks }),
    });
    return { dir, store };
  }

  storeConformance(`filesystem on ${fs} (rotation clones the newest generation)`, async () => {
    const { dir, store } = await freshStore();
    return fsStoreUnderTest(store, dir, { allocatedBytes: async (path) => mappedBytes(path) });
  });

  /**
   * Bytes the image maps (FIEMAP, through filefrag). Not st_blocks: XFS, for one, counts there the blocks it
   * reserves for copy-on-write beyond each write (the CoW extent size hint, 128 KiB by default),
   * which are not part of the file and which XFS reclaims in the background.
   */
  function mappedBytes(path: string): number {
    const out = execFileSync('filefrag', ['-v', path], { encoding: 'utf8' });
    const block = Number(/blocks? of (\d+) bytes/.exec(out)?.[1]);
    assert.ok(block > 0, `filefrag gave no block size for ${path}: ${out}`);
    let blocks = 0;
    // An inline extent (btrfs keeps a small file inside its metadata) maps no data blocks.
    for (const m of out.matchAll(/^\s*\d+:\s+\d+\.\.\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+):.*$/gm))
      if (!/\binline\b/.test(m[0])) blocks += Number(m[1]);
    return blocks * block;
  }

  /** Whether any extent of the file is shared with another file (FIEMAP_EXTENT_SHARED). */
  function sharesExtents(path: string): boolean {
    return /\bshared\b/.test(execFileSync('filefrag', ['-v', path], { encoding: 'utf8' }));
  }

  test(`on ${fs}, generations share unchanged blocks and no delta is kept for replay`, async (t) => {
    const log = captureLog();
    const { lines } = log;
    const { dir, store } = await freshStore(log);
    t.after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const sim = new ServerSim({ store, server: 'Web01', disks: disksFor('Web01'), copies: 3, seed: 11 });
    for (let run = 1; run <= 5; run++) {
      lines.length = 0;
      await sim.runDelta({ writes: 4, zeroRanges: 1 });
      await sim.check(`run ${run}`);
      if (run >= 4) {
        // Three generations exist: the rotation clones by plan, not as the fallback for a lost delta.
        assert.ok(
          lines.some((l) => l.startsWith('the new slot is a clone of the newest generation (reflinks')),
          lines.join('\n'),
        );
        assert.ok(!lines.some((l) => l.includes('is gone')), lines.join('\n'));
      }
    }
    const layout = new FsLayout(dir);
    for (const seq of [1, 2, 3]) {
      const image = layout.image('Web01', 'Web01_0', seq);
      assert.ok(sharesExtents(image), `${image} shares blocks with the other generations`);
    }
    // A replaying store keeps the producers of _1 and _2 (copies − 1); a cloning one needs none.
    assert.deepEqual(await readdir(layout.deltasDir('Web01')).catch(() => []), []);
    const report = await store.verify('Web01');
    assert.equal(report.ok, true, JSON.stringify(report.problems));
  });

  test(`on ${fs} with reflinks turned off (receive --no-reflink), rotation replays and keeps its deltas`, async (t) => {
    const log = captureLog();
    const { lines } = log;
    const { dir, store } = await freshStore(log, false);
    t.after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const sim = new ServerSim({ store, server: 'Web01', disks: disksFor('Web01'), copies: 3, seed: 12 });
    for (let run = 1; run <= 5; run++) {
      await sim.runDelta({ writes: 4, zeroRanges: 1 });
      await sim.check(`run ${run}`);
    }
    assert.ok(!lines.some((l) => l.includes('clone')), lines.join('\n'));
    const layout = new FsLayout(dir);
    // The producers of _1 and _2, for the next replay onto _3.
    assert.equal((await readdir(layout.deltasDir('Web01'))).length, 2);
    assert.ok(!sharesExtents(layout.image('Web01', 'Web01_0', 1)), 'the newest image shares no blocks');
  });
}
