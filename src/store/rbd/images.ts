/**
 * Generations as RBD images (DESIGN §4.1: `<server>_<disk>_<seq>` is the image name), for the
 * shared write path (common/images.ts).
 *
 * Rotation by the cluster (docs/store-rbd.md): each disk has one *head*, an image holding its data
 * in full, which is always the newest generation (`_1`, or `_incomplete` while a delta is applied
 * to it). Every older generation is a clone (format 2) of a snapshot of the head, taken when that
 * generation stopped being the newest: it shares every block the head has not overwritten since.
 * The rotation asks for the new slot as a copy of the newest generation (`copy(_2 → _incomplete)`
 * right after `_1` became `_2`); here that is a swap: the head is renamed `_incomplete`, a snapshot
 * of it taken, and `_2` made a clone of that snapshot. Both names then hold the same bytes, as a
 * copy would, but the delta is written once, into the head, and the old generation costs only the
 * blocks the delta overwrites. Dropping the oldest generation removes its clone and then its
 * snapshot. All clones hang off one head, one level deep: nothing is ever flattened.
 *
 * Renames, snapshots and clones are metadata operations of the cluster, durable when they return.
 */
import { randomUUID } from 'node:crypto';
import type { DiskSourceSpec, NetworkDiskSource } from '../../core/domain-xml.ts';
import type { Logger } from '../../core/log.ts';
import { checkName } from '../../core/names.ts';
import type {
  ImageVolumes,
  OpenWritableOptions,
  ReadableImage,
  RotationRoom,
  WritableImage,
} from '../common/images.ts';
import { imageName, imageSeqs } from '../common/names.ts';
import type { Seq } from '../common/rotation-plan.ts';
import { sumsLength } from '../common/sums.ts';
import { storeError } from '../errors.ts';
import type { Broker, Reply } from './broker.ts';
import { poolFull } from './errors.ts';
import type { RbdLocation } from './location.ts';
import { openBrokerReader } from './reader.ts';
import { RbdWritable } from './writable.ts';

/** Snapshots Haven takes on a head are named so (broker.py removes only these). */
const SNAP_PREFIX = 'haven-';
/** A clone while it is made (cloneBack), renamed to the generation's name once whole. */
const BUILDING_SUFFIX = '.building';
/** Headroom beyond the rotation's own writes (objects of the metadata, image headers). */
const SLACK_BYTES = 4 << 20;

export interface ImageInfo {
  size: number;
  parent: { pool: string; image: string; snap: string } | null;
  snaps: { name: string; children: number }[];
}

export interface RbdImagesOptions {
  broker: Broker;
  location: RbdLocation;
  /** QEMU's filename for an image of this store, with the client settings. */
  qemuFilename(image: string): string;
  /** The usage name of the libvirt secret that holds the user's key (definitions). */
  secretUsage: string;
  deadlineMs: number;
  log: Logger;
}

export class RbdImages implements ImageVolumes {
  /** Definitions name the images as network disks (diskSource), not as paths. */
  readonly blockDevices = false;

  constructor(private readonly o: RbdImagesOptions) {}

  name(server: string, disk: string, seq: Seq): string {
    return imageName(checkName('server', server), checkName('disk', disk), seq);
  }

  path(server: string, disk: string, seq: Seq): string {
    return `rbd:${this.o.location.pool}/${this.name(server, disk, seq)}`;
  }

  diskSource(server: string, disk: string, seq: Seq): DiskSourceSpec {
    return { network: this.networkSource(this.name(server, disk, seq)) };
  }

  /** libvirt's network disk source of an image of this store. */
  networkSource(image: string): NetworkDiskSource {
    const l = this.o.location;
    return {
      protocol: 'rbd',
      name: `${l.pool}/${image}`,
      hosts: (l.monitors ?? []).map(parseMonitor),
      ...(l.monitors ? {} : l.conf ? { config: l.conf } : {}),
      auth: { username: l.user, secretUsage: this.o.secretUsage },
    };
  }

  /** What the cluster says about an image, or null when it does not exist. */
  async info(image: string): Promise<ImageInfo | null> {
    const r = await this.o.broker.call('img_info', { name: image });
    if (r.missing === true) return null;
    return {
      size: Number(r.size),
      parent: (r.parent ?? null) as ImageInfo['parent'],
      snaps: r.snaps as ImageInfo['snaps'],
    };
  }

  async exists(server: string, disk: string, seq: Seq): Promise<boolean> {
    return (await this.info(this.name(server, disk, seq))) !== null;
  }

  async size(server: string, disk: string, seq: Seq): Promise<number | null> {
    return (await this.info(this.name(server, disk, seq)))?.size ?? null;
  }

  /** Every image in the pool: the pool is the store's alone (docs/store-rbd.md). */
  async names(): Promise<string[]> {
    return (await this.o.broker.call('img_list')).names as string[];
  }

  async list(server: string, disk: string): Promise<Seq[]> {
    return imageSeqs(await this.names(), server, disk);
  }

  /** Bytes the image itself holds in the cluster (a clone: only what it no longer shares). */
  async allocated(server: string, disk: string, seq: Seq): Promise<number> {
    return this.allocatedOf(this.name(server, disk, seq));
  }

  async allocatedOf(image: string): Promise<number> {
    const r = await this.o.broker.call('img_allocated', { name: image });
    return Number(r.bytes ?? 0);
  }

  async openRead(server: string, disk: string, seq: Seq): Promise<ReadableImage | null> {
    return this.openReaderOf(this.name(server, disk, seq), this.path(server, disk, seq));
  }

  /** Reads go through the broker (reader.ts). */
  openReaderOf(image: string, path: string): Promise<ReadableImage | null> {
    return openBrokerReader(this.o.broker, image, path);
  }

  async rename(server: string, disk: string, from: Seq, to: Seq): Promise<boolean> {
    const source = this.name(server, disk, from);
    const target = this.name(server, disk, to);
    if (!(await this.info(source))) return false;
    // As rename(2): an existing target is replaced.
    if (await this.info(target)) await this.removeImage(target);
    return (await this.o.broker.call('img_rename', { from: source, to: target })).renamed === true;
  }

  remove(server: string, disk: string, seq: Seq): Promise<boolean> {
    return this.removeImage(this.name(server, disk, seq));
  }

  async removeImage(image: string): Promise<boolean> {
    const r = await this.o.broker.call('img_rm', { name: image });
    if (r.how === 'trashed')
      this.o.log.debug('image moved to the RBD trash until its clones are gone', { image });
    return r.removed === true;
  }

  /** Cluster operations are durable when they return. */
  async syncNames(): Promise<void> {}

  async openWritable(
    server: string,
    disk: string,
    seq: Seq,
    options: OpenWritableOptions,
  ): Promise<WritableImage> {
    const image = this.name(server, disk, seq);
    const { broker } = this.o;
    let info = await this.info(image);
    if (info && options.create === 'always') {
      await this.removeImage(image);
      info = null;
    }
    if (!info) {
      if (options.create === 'never' || options.size === undefined) {
        throw storeError('STORE_IMAGE_MISSING', 'integrity', `${this.path(server, disk, seq)} is missing`, {
          hint: 'Run `haven verify`; the image was removed outside Haven.',
        });
      }
      await broker.call('img_create', { name: image, size: options.size });
    } else if (options.size !== undefined && info.size !== options.size) {
      await broker.call('img_resize', { name: image, size: options.size });
    }
    return RbdWritable.open({
      path: this.path(server, disk, seq),
      qemuFilename: this.o.qemuFilename(image),
      deadlineMs: this.o.deadlineMs,
      explain: (e) => this.explain(e),
      resizeImage: async (size) => {
        await broker.call('img_resize', { name: image, size });
      },
      log: options.log,
    });
  }

  async read(
    server: string,
    disk: string,
    seq: Seq,
    buf: Buffer,
    length: number,
    position: number,
  ): Promise<void> {
    const { reply, data } = await this.o.broker.callData('read', {
      name: this.name(server, disk, seq),
      offset: position,
      length,
    });
    if (reply.missing === true) {
      throw storeError('STORE_IMAGE_MISSING', 'integrity', `${this.path(server, disk, seq)} is missing`, {
        hint: 'Run `haven verify`; the image was removed outside Haven.',
      });
    }
    data.copy(buf, 0, 0, length);
  }

  /**
   * `to` becomes the same bytes as `from` (the top of this file): the head is renamed `to` and
   * `from` becomes a clone of a snapshot of it. Idempotent: a swap interrupted after the rename
   * (`from` gone, `to` a head) is finished; one already done (`from` a clone of `to`) is left.
   */
  async copy(server: string, disk: string, from: Seq, to: Seq, log: Logger): Promise<string> {
    const source = this.name(server, disk, from);
    const target = this.name(server, disk, to);
    const src = await this.info(source);
    if (!src) {
      const dst = await this.info(target);
      if (dst && !dst.parent) {
        await this.cloneBack(target, source);
        return 'clone';
      }
      throw storeError('STORE_IMAGE_MISSING', 'integrity', `${this.path(server, disk, from)} is missing`, {
        hint: 'Run `haven verify`; nothing was changed.',
      });
    }
    if (src.parent?.image === target && src.parent.pool === this.o.location.pool) return 'clone';
    if (await this.info(target)) await this.removeImage(target);
    if (src.parent) {
      // Not a head (an image made outside this scheme): a full copy keeps the bytes right.
      log.info('the newest image is a clone; copying it in full', { image: source });
      await this.o.broker.call('deep_copy', { from: source, to: target });
      return 'copy';
    }
    await this.o.broker.call('img_rename', { from: source, to: target });
    await this.cloneBack(target, source);
    return 'clone';
  }

  /** Makes `clone` a clone of a new snapshot of `head` (orphaned Haven snapshots removed first). */
  private async cloneBack(head: string, clone: string): Promise<void> {
    const { broker } = this.o;
    // Made under a name of its own and then renamed: a clone is visible before its parent is
    // attached, and a reader opening it then would read zeroes. A leftover of a crash goes first,
    // so that its snapshot has no clone left and is pruned.
    const building = `${clone}${BUILDING_SUFFIX}`;
    await this.removeImage(building);
    await broker.call('snap_prune', { name: head });
    const snap = `${SNAP_PREFIX}${randomUUID()}`;
    await broker.call('snap_create', { name: head, snap });
    await broker.call('clone', { parent: head, snap, child: building });
    await broker.call('img_rename', { from: building, to: clone });
  }

  /** The cluster rotates by snapshot and clone whenever more than one generation is kept. */
  async rotationClones(copies: number, _log: Logger): Promise<boolean> {
    return copies >= 2;
  }

  /**
   * Room for a rotation in the pool: what the deltas write (a cloned slot copies on write every
   * block they overwrite, so all of it counts) plus the new digests, against the pool's quota and
   * the cluster's free space for it (`ceph df`'s MAX AVAIL, the replicas counted).
   */
  async checkRoom(room: RotationRoom): Promise<void> {
    let need = SLACK_BYTES;
    for (const d of room.disks) need += d.dataBytes + sumsLength(d.size);
    const st = await this.o.broker.call('pool_status');
    const quota = Number(st.quotaBytes ?? 0);
    const used = Number(st.usedBytes ?? 0);
    if (st.full === true || (quota > 0 && quota - used < need)) {
      const e = poolFull(this.o.location.pool, quota, used);
      throw storeError(
        'NO_SPACE',
        'resource',
        `${e.message}: the commit of ${room.server} needs ${need} bytes`,
        {
          hint: e.hint,
          details: { ...e.details, needBytes: need },
        },
      );
    }
  }

  /** A failure of the image I/O path, explained: a pool over its quota makes it NO_SPACE. */
  async explain(e: unknown): Promise<unknown> {
    const st: Reply | null = await this.o.broker.call('pool_status').catch(() => null);
    if (st?.full === true)
      return poolFull(this.o.location.pool, Number(st.quotaBytes ?? 0), Number(st.usedBytes ?? 0), e);
    return e;
  }
}

function parseMonitor(m: string): { name: string; port?: number } {
  const bracket = /^\[(.+)\](?::(\d+))?$/.exec(m);
  if (bracket) return { name: bracket[1] ?? m, ...(bracket[2] ? { port: Number(bracket[2]) } : {}) };
  const i = m.lastIndexOf(':');
  return i < 0 ? { name: m } : { name: m.slice(0, i), port: Number(m.slice(i + 1)) };
}
