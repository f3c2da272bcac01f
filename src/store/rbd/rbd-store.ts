/**
 * The Ceph RBD store (docs/store-rbd.md): generations are RBD images in one pool of a Ceph
 * cluster, named as docs/design.md §4.1, rotated by snapshots and clones inside the cluster
 * (images.ts), written through qemu-nbd (writable.ts), and booted by libvirt straight from the
 * cluster. Its metadata is the filesystem store's, file for file, in a directory of the DR host
 * (common/), written through to the pool as it changes (mirror.ts): a directory that lacks it is
 * filled from the pool, so a DR site recovers from the cluster alone. Here: opening and creating one.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DefinitionRules } from '../../core/definition-context.ts';
import type { DigestAlgorithm } from '../../core/digest.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { type StoreContext, storeContext } from '../common/context.ts';
import { openDescriptor, readDescriptor } from '../common/descriptor.ts';
import { ensureDir, io } from '../common/files.ts';
import { acquireLock } from '../common/lock.ts';
import { DESCRIPTOR_FILE, MetadataLayout } from '../common/metadata-layout.ts';
import { StoreBase } from '../common/store-base.ts';
import { storeError } from '../errors.ts';
import type { DeltaMeta, DeltaWriter, NetworkImage } from '../types.ts';
import { Broker } from './broker.ts';
import { poolFull } from './errors.ts';
import { RbdImages } from './images.ts';
import { formatRbdLocation, parseRbdLocation, type RbdLocation } from './location.ts';
import { RbdMirror } from './mirror.ts';
import { stopOrphanedExports } from './orphans.ts';

export interface RbdStoreOptions {
  /** The cluster and pool (`rbd://USER@CLUSTER/POOL`): required to create, checked when given. */
  rbd?: string;
  /** Initialise the directory (and the pool) as a store if it holds none yet. */
  create?: boolean;
  /** Digest algorithm of a new store (default blake3); must match an existing store's. */
  digest?: DigestAlgorithm;
  /** Where staged deltas go (a filesystem the operator chooses); default the store's `.haven` area. */
  stagingDir?: string;
  /** librados operation timeout in seconds (default 30): a stopped OSD or a full pool answers then. */
  opTimeoutS?: number;
  /** How long connecting to a monitor may take, in seconds (default 30). */
  mountTimeoutS?: number;
  log?: Logger;
  busyWaitMs?: number;
  definitionRules?: () => Promise<DefinitionRules>;
  /** How long a generation's check stays good (common/checked.ts; default a day). */
  recheckAfterMs?: number;
}

export const DEFAULT_OP_TIMEOUT_S = 30;

/** QEMU's filename of an image (qemu-nbd, qemu-img): `rbd:pool/image` and the client settings. */
export function qemuRbdFilename(
  l: RbdLocation,
  image: string,
  timeouts: { opS: number; mountS: number },
): string {
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  const parts = [`rbd:${l.pool}/${image}`, `id=${esc(l.user)}`];
  if (l.conf) parts.push(`conf=${esc(l.conf)}`);
  parts.push(`keyring=${esc(l.keyring)}`);
  if (l.monitors) parts.push(`mon_host=${esc(l.monitors.join(','))}`);
  parts.push(`rados_osd_op_timeout=${timeouts.opS}`, `client_mount_timeout=${timeouts.mountS}`);
  return parts.join(':');
}

/**
 * The usage name of the libvirt secret holding the user's key (unique per cluster and user).
 * No `/` in it: libvirt's domain schema (basictypes.rng "objectName") refuses one, and libvirt
 * validates a domain's XML when it redefines a checkpoint (failback's live pass).
 */
export function cephSecretUsage(fsid: string, user: string): string {
  return `haven:${fsid}:client.${user}`;
}

export async function openRbdStore(dir: string, options: RbdStoreOptions = {}): Promise<RbdStore> {
  const layout = new MetadataLayout(dir);
  const log = options.log ?? silentLogger;
  const given = options.rbd === undefined ? undefined : parseRbdLocation(options.rbd);
  const local = await readDescriptor(layout);
  const location = given ?? (local?.rbd ? parseRbdLocation(local.rbd) : undefined);
  if (!location) {
    throw storeError('RBD_BAD_LOCATION', 'usage', `no Ceph pool given for the rbd store ${layout.root}`, {
      hint: 'Name the pool: haven receive --store DIR --rbd rbd://USER@CLUSTER/POOL (docs/store-rbd.md).',
    });
  }
  if (local?.rbd && given && parseRbdLocation(local.rbd).pool !== given.pool)
    throw conflict(layout.root, local.rbd, given);
  const opS = options.opTimeoutS ?? envTimeoutS() ?? DEFAULT_OP_TIMEOUT_S;
  const mountS = options.mountTimeoutS ?? envTimeoutS() ?? DEFAULT_OP_TIMEOUT_S;
  const broker = new Broker({ location, opTimeoutS: opS, mountTimeoutS: mountS, log });
  try {
    const fsid = String((await broker.hello()).fsid);
    const mirror = new RbdMirror(broker, layout, log);
    await ensureDir(layout.root);
    // A directory without the store's files (a new DR host): the pool has them.
    if (!local && (await mirror.fetchIfMissing(DESCRIPTOR_FILE)))
      log.info('store found in the pool', { pool: location.pool });
    const descriptor = await openDescriptor(layout, 'rbd', {
      log,
      ...(options.create ? { create: true } : {}),
      ...(options.digest ? { digest: options.digest } : {}),
      rbd: formatRbdLocation(location),
    });
    if (descriptor.rbd && parseRbdLocation(descriptor.rbd).pool !== location.pool)
      throw conflict(layout.root, descriptor.rbd, location);
    await ensureDir(layout.locksDir);
    await stopOrphanedExports(log);
    await synchronise(mirror, layout, log);
    const images = new RbdImages({
      broker,
      location,
      qemuFilename: (image) => qemuRbdFilename(location, image, { opS, mountS }),
      secretUsage: cephSecretUsage(fsid, location.user),
      deadlineMs: broker.deadlineMs,
      log,
    });
    const ctx = await storeContext({ layout, images, descriptor, log, directIo: true, mirror }, options);
    const parts = { location, fsid, broker, images, opTimeoutS: opS, mountTimeoutS: mountS };
    return new RbdStore(ctx, parts, options.busyWaitMs ?? 30_000);
  } catch (e) {
    await broker.close();
    throw e;
  }
}

/** `HAVEN_RBD_TIMEOUT` (seconds): the client timeouts of every rbd store this process opens. */
function envTimeoutS(): number | undefined {
  const text = process.env.HAVEN_RBD_TIMEOUT;
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 3600) {
    throw storeError('USAGE', 'usage', `HAVEN_RBD_TIMEOUT=${text} is not a number of seconds (1 to 3600)`, {
      hint: 'Give whole seconds, or unset it for the default of 30.',
    });
  }
  return n;
}

/** The cephx key of `client.<user>` in a keyring file (`[client.haven]` then `key = …`). */
async function readCephKey(keyring: string, user: string): Promise<string> {
  const text = await io(keyring, () => readFile(keyring, 'utf8'));
  let inSection = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const section = /^\[(.+)\]$/.exec(line);
    if (section) inSection = section[1] === `client.${user}`;
    const key = /^key\s*=\s*(\S+)$/.exec(line);
    if (inSection && key?.[1]) return key[1];
  }
  throw storeError('RBD_PERMISSION_DENIED', 'refused', `${keyring} holds no key for client.${user}`, {
    hint: `Write the user's keyring there: ceph auth get client.${user} -o ${keyring}`,
  });
}

function conflict(root: string, recorded: string, given: RbdLocation) {
  return storeError(
    'RBD_CONFLICT',
    'usage',
    `${root} is a store of ${recorded}, not of ${formatRbdLocation(given)}`,
    {
      hint: 'Leave --rbd out for an existing store (its descriptor names its pool), or give that pool.',
    },
  );
}

/** The mirror's sync, one process at a time on this host. */
async function synchronise(mirror: RbdMirror, layout: MetadataLayout, log: Logger): Promise<void> {
  const lock = await acquireLock(join(layout.locksDir, '.mirror.lock'), {
    purpose: 'metadata sync',
    log,
    waitMs: 120_000,
    locked: (h) =>
      storeError(
        'STORE_BUSY',
        'conflict',
        `another process (pid ${h.pid}) is synchronising the store's metadata`,
        {
          hint: 'Try again in a moment.',
        },
      ),
  });
  try {
    await mirror.sync();
  } finally {
    await lock.release();
  }
}

export interface RbdStoreParts {
  location: RbdLocation;
  fsid: string;
  broker: Broker;
  images: RbdImages;
  opTimeoutS: number;
  mountTimeoutS: number;
}

export class RbdStore extends StoreBase {
  readonly kind = 'rbd' as const;

  constructor(
    ctx: StoreContext,
    readonly rbd: RbdStoreParts,
    busyWaitMs: number,
  ) {
    super(ctx, ctx.layout.root, busyWaitMs);
  }

  get images(): RbdImages {
    return this.rbd.images;
  }

  /** QEMU's filename of an image of this store (restore, tests). */
  qemuFilename(image: string): string {
    return qemuRbdFilename(this.rbd.location, image, {
      opS: this.rbd.opTimeoutS,
      mountS: this.rbd.mountTimeoutS,
    });
  }

  /**
   * What a sender is told of the store's room (docs/stream-protocol.md §4.1): the pool's quota
   * where it has one, else what the cluster can still place in it (`ceph df` MAX AVAIL).
   */
  async capacity(): Promise<{ totalBytes: number; freeBytes: number }> {
    const st = await this.rbd.broker.call('pool_status');
    const quota = Number(st.quotaBytes ?? 0);
    const used = Number(st.usedBytes ?? 0);
    if (quota > 0) return { totalBytes: quota, freeBytes: Math.max(0, quota - used) };
    const df = await this.rbd.broker.call('df');
    const free = Number(df.maxAvailBytes ?? 0);
    return { totalBytes: Number(df.storedBytes ?? 0) + free, freeBytes: free };
  }

  /**
   * A pool at its quota takes no write, and Ceph's clients wait on it until their timeout: a
   * delta is refused at once instead, before anything is written (NO_SPACE).
   */
  override async openDelta(meta: DeltaMeta, log?: Logger): Promise<DeltaWriter> {
    const deadline = Date.now() + this.rbd.opTimeoutS * 1000;
    for (;;) {
      const st = await this.rbd.broker.call('pool_status');
      if (st.full !== true) break;
      const quota = Number(st.quotaBytes ?? 0);
      const used = Number(st.usedBytes ?? 0);
      // A quota just raised or removed: the monitor clears the pool's full flag only with its next
      // statistics (seconds), and until then the cluster still holds writes. Wait for it, within
      // the store's timeout; a pool still over its quota is refused at once.
      const stale = quota === 0 || used < quota;
      if (!stale || Date.now() > deadline) throw poolFull(this.rbd.location.pool, quota, used);
      await new Promise((r) => setTimeout(r, 500));
    }
    return super.openDelta(meta, log);
  }

  /** A generation's image for drills and activations: booted from the cluster under an overlay. */
  async networkImage(server: string, generationId: string, disk: string): Promise<NetworkImage> {
    const path = await this.imagePath(server, generationId, disk);
    const image = path.slice(`rbd:${this.rbd.location.pool}/`.length);
    return {
      source: this.rbd.images.networkSource(image),
      qemuFilename: this.qemuFilename(image),
      secret: {
        usage: cephSecretUsage(this.rbd.fsid, this.rbd.location.user),
        key: await readCephKey(this.rbd.location.keyring, this.rbd.location.user),
      },
    };
  }

  override async recover(only?: string): Promise<string[]> {
    const messages = await super.recover(only);
    const r = await this.rbd.broker.call('trash_gc');
    for (const name of (r.removed ?? []) as string[])
      messages.push(`removed ${name} from the RBD trash (its clones are gone)`);
    return messages;
  }

  override async close(): Promise<void> {
    await this.rbd.broker.close();
  }
}
