/**
 * Images as logical volumes (docs/store-lvm.md) for the shared write path (common/images.ts): one
 * LV per image, named as the filesystem store names its files without `.raw`, tagged with the
 * store's id (only such LVs are ever listed, opened, renamed or removed), its exact size in a tag.
 * `volumes/<name>` in the metadata directory links to `/dev/<vg>/<name>`: the path definitions
 * and logs use, stable whichever group holds the LV.
 *
 * Questions about a server's own LVs are answered from one `lvs` listing while this process holds
 * the server's write lock, kept exact by the store's own changes (listing.ts); free space, other
 * servers' LVs and everything asked without the lock go to `lvs` and `vgs` each time.
 */
import { type FileHandle, open, rename, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, silentLogger } from '../../core/log.ts';
import { DirectReads, DirectWrites } from '../common/direct-io.ts';
import { ensureDir, fsyncDir, io, isErrno, listDir, readAllAt, tmpName } from '../common/files.ts';
import type { ByteRange } from '../common/holes.ts';
import type {
  ImageVolumes,
  OpenWritableOptions,
  PositionedWrites,
  ReadableImage,
  RotationRoom,
  WritableImage,
} from '../common/images.ts';
import type { MetadataLayout } from '../common/metadata-layout.ts';
import { imageName, imageSeqs } from '../common/names.ts';
import type { Seq } from '../common/rotation-plan.ts';
import { storeError } from '../errors.ts';
import type { LvmCli } from './cli.ts';
import { added, heldToken, LvListing, removed, renamed, retagged } from './listing.ts';
import {
  checkLvName,
  chooseGroup,
  discardBlock,
  type GroupSpec,
  type LvInfo,
  places,
  poolIsFull,
  SIZE_TAG_PREFIX,
  sizeTag,
  storeTag,
  taggedSize,
} from './report.ts';
import { checkLvmRoom } from './room.ts';
import { explaining, mayBeFullPool, ThinVolumeWrites, thinPoolFull } from './thin-full.ts';
import { zeroRanges } from './zero.ts';

const COPY_BYTES = 4 << 20;

export interface LvmImageOptions {
  groups: GroupSpec[];
  /** The store's id: its LVs carry the tag `haven_store=<id>`. */
  storeId: string;
  directIo: boolean;
}

/** Every LV of the store's groups, and by name: Haven's (this store's tag) and others'. */
interface Sorted {
  own: Map<string, LvInfo>;
  foreign: Map<string, LvInfo>;
  all: LvInfo[];
}

/** The LVs of the store's groups: Haven's (this store's tag) and others', by name. */
interface Found {
  own: LvInfo | null;
  foreign: LvInfo | null;
  /** Every LV of the groups (thin pools included). */
  all: LvInfo[];
}

export class LvmImages implements ImageVolumes {
  readonly blockDevices = true;
  private readonly tag: string;
  readonly volumesDir: string;
  private readonly listing = new LvListing();

  constructor(
    readonly layout: MetadataLayout,
    private readonly lvm: LvmCli,
    private readonly options: LvmImageOptions,
  ) {
    this.tag = storeTag(options.storeId);
    this.volumesDir = join(layout.root, 'volumes');
  }

  get groups(): readonly GroupSpec[] {
    return this.options.groups;
  }

  path(server: string, disk: string, seq: Seq): string {
    return join(this.volumesDir, this.name(server, disk, seq));
  }

  /** A thick LV takes its whole size; a thin one what its pool has mapped for it. */
  async allocated(server: string, disk: string, seq: Seq): Promise<number> {
    // Space: asked afresh (a thin volume's mapped part grows as it is written).
    const own = (await this.lvsNow()).own.get(this.name(server, disk, seq));
    if (!own) return 0;
    return own.pool ? Math.ceil((own.size * (own.dataPercent ?? 0)) / 100) : own.size;
  }

  async exists(server: string, disk: string, seq: Seq): Promise<boolean> {
    return (await this.find(server, this.name(server, disk, seq))).own !== null;
  }

  async rename(server: string, disk: string, from: Seq, to: Seq): Promise<boolean> {
    const fromName = this.name(server, disk, from);
    const toName = this.name(server, disk, to);
    const all = await this.ownLvs(server);
    const source = all.own.get(fromName);
    if (!source) return false;
    refuseForeign(all.foreign.get(toName), toName);
    // As rename(2) replaces its target: the image at `to` goes first (a crash between leaves the
    // source under its old name, and the step is done again).
    const target = all.own.get(toName);
    if (target) await this.removeLv(target);
    await this.listing.change(
      () => this.lvm.rename(source.vg, fromName, toName),
      (lvs) => renamed(lvs, source.vg, fromName, toName),
    );
    await this.unlink(fromName);
    await this.link(source.vg, toName);
    return true;
  }

  async remove(server: string, disk: string, seq: Seq): Promise<boolean> {
    const found = await this.find(server, this.name(server, disk, seq));
    if (!found.own) return false;
    await this.removeLv(found.own);
    return true;
  }

  /** lvm committed every change already; the links' directory is made durable. */
  syncNames(): Promise<void> {
    return fsyncDir(this.volumesDir);
  }

  async openWritable(server: string, disk: string, seq: Seq, o: OpenWritableOptions): Promise<WritableImage> {
    const name = this.name(server, disk, seq);
    const found = await this.find(server, name);
    refuseForeign(found.foreign, name);
    let lv = found.own;
    if (lv && o.create === 'always') {
      await this.removeLv(lv);
      lv = null;
    }
    let all = found.all;
    if (!lv) {
      if (o.create === 'never') throw missingImage(this.path(server, disk, seq));
      lv = await this.createLv(server, name, o.size ?? 0, o.log);
      all = [...all, lv];
    }
    const image = await LvImage.open(this, lv, discardBlock(lv, all), this.options.directIo, o.log);
    if (o.size !== undefined) await image.resize(o.size);
    return image;
  }

  async openRead(server: string, disk: string, seq: Seq): Promise<ReadableImage | null> {
    const { own } = await this.find(server, this.name(server, disk, seq));
    if (!own) return null;
    const path = devicePath(own);
    const handle = await io(path, () => open(path, 'r'));
    try {
      const size = taggedSize(own) ?? own.size;
      const direct = await DirectReads.open(`/proc/self/fd/${handle.fd}`, handle, this.options.directIo);
      return {
        path,
        size,
        read: (buf, length, position) => io(path, () => readCapped(direct, buf, length, position, size)),
        close: async () => {
          await direct.close();
          await handle.close();
        },
      };
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async list(server: string, disk: string): Promise<Seq[]> {
    return imageSeqs((await this.ownLvs(server)).own.keys(), server, disk);
  }

  async read(
    server: string,
    disk: string,
    seq: Seq,
    buf: Buffer,
    length: number,
    position: number,
  ): Promise<void> {
    const image = await this.openRead(server, disk, seq);
    if (!image) throw missingImage(this.path(server, disk, seq));
    try {
      await image.read(buf, length, position);
    } finally {
      await image.close();
    }
  }

  /** A thin snapshot where the source is a thin volume; else a new LV and a copy of the bytes. */
  async copy(server: string, disk: string, from: Seq, to: Seq, log: Logger): Promise<string> {
    const fromName = this.name(server, disk, from);
    const toName = this.name(server, disk, to);
    const all = await this.ownLvs(server);
    const source = all.own.get(fromName);
    if (!source) throw missingImage(this.path(server, disk, from));
    refuseForeign(all.foreign.get(toName), toName);
    const old = all.own.get(toName);
    if (old) await this.removeLv(old);
    const size = taggedSize(source) ?? source.size;
    if (source.pool) {
      const tags = [this.tag, sizeTag(size)];
      // A thin snapshot is its origin's size in its origin's pool, with the tags given.
      await this.listing.change(
        () => this.lvm.snapshot(source.vg, fromName, toName, tags),
        (lvs) => added(lvs, { ...source, name: toName, tags }),
      );
      await this.link(source.vg, toName);
      return 'thin snapshot';
    }
    // Every byte up to the image's size is copied: no zeroing first.
    const target = await this.createLv(server, toName, size, log, false);
    await copyBytes(devicePath(source), devicePath(target), size);
    return 'copied';
  }

  /** Thin snapshots need every group to be a thin pool (a snapshot stays in its origin's pool). */
  async rotationClones(copies: number, _log: Logger): Promise<boolean> {
    return copies >= 2 && this.options.groups.every((g) => g.pool !== undefined);
  }

  /** Free space is read afresh: another server's run may take or give back room at any time. */
  async checkRoom(room: RotationRoom): Promise<void> {
    const [vgs, lvs] = await Promise.all([this.lvm.vgs(this.vgNames()), this.fresh(room.server)]);
    await checkLvmRoom(this.layout, room, places(this.options.groups, vgs, lvs));
  }

  /** The names of every LV of this store, in every group. */
  async names(): Promise<string[]> {
    return [...(await this.lvsNow()).own.keys()].sort();
  }

  /**
   * The groups' size and free space together (thin groups: their pools'), asked afresh: the
   * receiver tells the sender at the start and after the commit. Only pools need `lvs`.
   */
  async capacity(): Promise<{ totalBytes: number; freeBytes: number }> {
    const names = this.vgNames();
    const pools = this.options.groups.some((g) => g.pool !== undefined);
    const [vgs, lvs] = await Promise.all([this.lvm.vgs(names), pools ? this.lvm.lvs(names) : []]);
    let totalBytes = 0;
    for (const g of this.options.groups) {
      const pool = g.pool ? lvs.find((l) => l.vg === g.vg && l.name === g.pool) : undefined;
      totalBytes += pool ? pool.size : (vgs.find((v) => v.name === g.vg)?.size ?? 0);
    }
    const freeBytes = places(this.options.groups, vgs, lvs).reduce((n, p) => n + p.free, 0);
    return { totalBytes, freeBytes };
  }

  /** Makes `volumes/` match the store's LVs (after a crash between an lvm command and a link). */
  async reconcileLinks(): Promise<void> {
    await ensureDir(this.volumesDir);
    const { own } = await this.lvsNow();
    for (const [name, lv] of own) await this.link(lv.vg, name);
    for (const f of await listDir(this.volumesDir)) {
      if (!own.has(f) && !f.startsWith('.')) await this.unlink(f);
    }
  }

  /**
   * What a failed write to `lv` means: NO_SPACE when it is a thin volume and `lvs` says its pool
   * is full, otherwise `e` as it is (also when `lvs` itself fails: the write's error is the news).
   */
  async explainWriteFailure(lv: LvInfo, path: string, e: unknown): Promise<unknown> {
    if (!lv.pool || !mayBeFullPool(e)) return e;
    try {
      const pool = (await this.lvm.lvs([lv.vg])).find((l) => l.name === lv.pool);
      return pool && poolIsFull(pool) ? thinPoolFull(lv, pool, path, e) : e;
    } catch {
      return e;
    }
  }

  /** Sets an open image's exact size (its tag), growing the LV when it is too small. */
  async setSize(lv: LvInfo, size: number): Promise<LvInfo> {
    let out = lv;
    if (size > lv.size) {
      // lvm rounds the new size up to extents: the listing is dropped and the LV read again.
      await this.listing.change(() => this.lvm.extend(lv.vg, lv.name, size), null);
      out = (await this.lvsNow()).own.get(lv.name) ?? lv;
    }
    const old = lv.tags.filter((t) => t.startsWith(SIZE_TAG_PREFIX));
    const add = [sizeTag(size)];
    if (!(old.length === 1 && old[0] === add[0])) {
      await this.listing.change(
        () => this.lvm.retag(lv.vg, lv.name, old, add),
        (lvs) => retagged(lvs, lv.vg, lv.name, old, add),
      );
    }
    return { ...out, tags: [...out.tags.filter((t) => !t.startsWith(SIZE_TAG_PREFIX)), sizeTag(size)] };
  }

  private name(server: string, disk: string, seq: Seq): string {
    return checkLvName(imageName(server, disk, seq));
  }

  private vgNames(): string[] {
    return this.options.groups.map((g) => g.vg);
  }

  /** The groups' LVs as `server`'s writer may know them: listing.ts says when that is cached. */
  private async ownLvs(server: string): Promise<Sorted> {
    const token = await heldToken(this.layout.serverLock(server));
    const kept = this.listing.get(server, token);
    return this.sort(kept ?? (await this.fresh(server, token)));
  }

  /** A fresh `lvs`, kept as `server`'s listing while this process holds its lock. */
  private async fresh(server: string, lockToken?: string | null): Promise<LvInfo[]> {
    const token = lockToken === undefined ? await heldToken(this.layout.serverLock(server)) : lockToken;
    const mark = this.listing.mark();
    const lvs = await this.lvsOrDrop();
    this.listing.put(server, token, lvs, mark);
    return lvs;
  }

  /** A fresh `lvs`, for questions about every server or about space. */
  private async lvsNow(): Promise<Sorted> {
    return this.sort(await this.lvsOrDrop());
  }

  private async lvsOrDrop(): Promise<LvInfo[]> {
    try {
      return await this.lvm.lvs(this.vgNames());
    } catch (e) {
      this.listing.drop();
      throw e;
    }
  }

  private sort(all: readonly LvInfo[]): Sorted {
    const own = new Map<string, LvInfo>();
    const foreign = new Map<string, LvInfo>();
    for (const lv of all) (lv.tags.includes(this.tag) ? own : foreign).set(lv.name, lv);
    return { own, foreign, all: [...all] };
  }

  private async find(server: string, name: string): Promise<Found> {
    const lvs = await this.ownLvs(server);
    return { own: lvs.own.get(name) ?? null, foreign: lvs.foreign.get(name) ?? null, all: lvs.all };
  }

  /**
   * A new LV in the group with the most room (seed 000), reading as zeroes over `size` bytes
   * unless `zero` is false (the caller writes every byte).
   */
  private async createLv(
    server: string,
    name: string,
    size: number,
    log: Logger,
    zero = true,
  ): Promise<LvInfo> {
    // Placement reads the free space afresh; the new LV's size (rounded by lvm) is read back.
    const [vgs, lvs] = await Promise.all([this.lvm.vgs(this.vgNames()), this.lvsOrDrop()]);
    const group = chooseGroup(places(this.options.groups, vgs, lvs), size, true);
    if (!group) throw noRoom(this.options.groups, name, size);
    await this.listing.change(() => this.lvm.create(group, name, size, [this.tag, sizeTag(size)]), null);
    await this.link(group.vg, name);
    const lv = (await this.find(server, name)).own;
    if (!lv) {
      throw storeError('STORE_LVM_FAILED', 'io', `lvcreate made no LV ${group.vg}/${name}`, {
        hint: 'Check `lvs` on the DR host; then run again.',
      });
    }
    // A thick LV holds whatever its extents held; a thin one reads as zeroes already.
    if (zero && !group.pool) await zeroWhole(lv, log);
    return lv;
  }

  private async removeLv(lv: LvInfo): Promise<void> {
    await this.listing.change(
      () => this.lvm.remove(lv.vg, lv.name),
      (lvs) => removed(lvs, lv.vg, lv.name),
    );
    await this.unlink(lv.name);
  }

  private async link(vg: string, name: string): Promise<void> {
    await ensureDir(this.volumesDir);
    const path = join(this.volumesDir, name);
    const tmp = tmpName(path);
    await io(path, async () => {
      await symlink(`/dev/${vg}/${name}`, tmp);
      await rename(tmp, path);
    });
  }

  private async unlink(name: string): Promise<void> {
    const path = join(this.volumesDir, name);
    await unlink(path).catch((e: unknown) => {
      if (!isErrno(e, 'ENOENT')) throw e;
    });
  }
}

/** An LV open for writing: its block device, its exact size in a tag (common/images.ts WritableImage). */
class LvImage implements WritableImage {
  private constructor(
    private readonly images: LvmImages,
    private lv: LvInfo,
    /** Thin volumes: discarding whole pool blocks unmaps them (report.ts discardBlock); 0: zero. */
    private readonly discard: number,
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly direct: DirectWrites,
  ) {
    this.out = lv.pool ? new ThinVolumeWrites(direct, (e) => this.explain(e)) : direct;
  }

  readonly out: PositionedWrites;

  /** A thin volume's failed write or sync: NO_SPACE when its pool is full (thin-full.ts). */
  private explain(e: unknown): Promise<unknown> {
    return this.images.explainWriteFailure(this.lv, this.path, e);
  }

  static async open(
    images: LvmImages,
    lv: LvInfo,
    discard: number,
    directIo: boolean,
    log: Logger,
  ): Promise<LvImage> {
    const path = devicePath(lv);
    const handle = await io(path, () => open(path, 'r+'));
    try {
      const direct = await io(path, () => DirectWrites.open(path, handle, directIo, log));
      return new LvImage(images, lv, discard, path, handle, direct);
    } catch (e) {
      await handle.close().catch(() => {});
      throw e;
    }
  }

  async size(): Promise<number> {
    return taggedSize(this.lv) ?? this.lv.size;
  }

  /** Growing zeroes the new part first: bytes past the old size may hold an earlier image's data. */
  async resize(size: number): Promise<void> {
    const old = await this.size();
    if (size === old) return;
    this.lv = await this.images.setSize(this.lv, size);
    if (size > old) {
      const grown = [{ offset: old, length: size - old }];
      await zeroRanges(this.handle, this.path, grown, silentLogger, this.discard);
    }
  }

  async punch(ranges: ByteRange[], log: Logger): Promise<void> {
    await zeroRanges(this.handle, this.path, ranges, log, this.discard);
  }

  datasync(): Promise<void> {
    return explaining(
      () => io(this.path, () => this.handle.datasync()),
      (e) => this.explain(e),
    );
  }

  sync(): Promise<void> {
    return explaining(
      () => io(this.path, () => this.handle.sync()),
      (e) => this.explain(e),
    );
  }

  async close(): Promise<void> {
    await this.direct.close();
    await this.handle.close().catch(() => {});
  }
}

function devicePath(lv: LvInfo): string {
  return `/dev/${lv.vg}/${lv.name}`;
}

async function readCapped(
  direct: DirectReads,
  buf: Buffer,
  length: number,
  position: number,
  size: number,
): Promise<void> {
  const want = Math.max(0, Math.min(length, size - position));
  let done = 0;
  while (done < want) {
    const n = await direct.read(buf.subarray(done), want - done, position + done);
    if (n === 0) break;
    done += n;
  }
  buf.fill(0, done, length);
}

async function zeroWhole(lv: LvInfo, log: Logger): Promise<void> {
  const path = devicePath(lv);
  const fh = await io(path, () => open(path, 'r+'));
  try {
    await zeroRanges(fh, path, [{ offset: 0, length: lv.size }], log);
    await io(path, () => fh.sync());
  } finally {
    await fh.close();
  }
}

async function copyBytes(from: string, to: string, size: number): Promise<void> {
  const src = await io(from, () => open(from, 'r'));
  try {
    const dst = await io(to, () => open(to, 'r+'));
    try {
      const buf = Buffer.alloc(COPY_BYTES);
      for (let at = 0; at < size; at += COPY_BYTES) {
        const n = Math.min(COPY_BYTES, size - at);
        await io(from, () => readAllAt(src, buf, n, at));
        await io(to, async () => {
          let done = 0;
          while (done < n) done += (await dst.write(buf, done, n - done, at + done)).bytesWritten;
        });
      }
      await io(to, () => dst.sync());
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}

function refuseForeign(lv: LvInfo | undefined | null, name: string): void {
  if (!lv) return;
  throw storeError(
    'STORE_LVM_FOREIGN',
    'conflict',
    `${lv.vg}/${name} exists and is not this store's: Haven leaves it alone`,
    {
      hint: `Rename or remove ${lv.vg}/${name} yourself if it is not needed (\`lvs -o lv_name,lv_tags ${lv.vg}\`), or give the server another name; nothing was changed.`,
      details: { vg: lv.vg, lv: name, tags: lv.tags },
    },
  );
}

function missingImage(path: string) {
  return storeError('STORE_IMAGE_MISSING', 'integrity', `the image ${path} is missing`, {
    hint: 'Run `haven verify --store PATH` to see what is missing.',
    details: { path },
  });
}

function noRoom(groups: readonly GroupSpec[], name: string, size: number) {
  const list = groups.map((g) => (g.pool ? `${g.vg}/${g.pool}` : g.vg)).join(', ');
  return storeError(
    'NO_SPACE',
    'resource',
    `no volume group of ${list} has room for ${name} (${size} bytes)`,
    {
      hint: 'Add a physical volume to a group (vgextend), or remove LVs Haven does not need, then run the replication again; stored generations are intact.',
      details: { groups: list, lv: name, needBytes: size },
    },
  );
}
