/**
 * The primary's end of failback: what the stream protocol's receiver (protocol/receiver.ts)
 * writes through when the delta goes back from the DR site. Instead of a store it writes straight
 * into the primary server's own disk images, through `qemu-nbd` (qcow2 or raw), so the server
 * boots from them as before, and the images' persistent bitmaps (the primary's replication
 * checkpoints) record every block failback wrote: the next replication to the DR store is again
 * incremental.
 *
 * The DR site sends only what changed there since the point the primary's images still hold. The
 * sink proves that claim before it accepts an incremental delta: the primary's bitmap named
 * `since` (the checkpoint of the generation that was activated, or the marker of the last
 * failback pass) must exist, be consistent and be empty — the primary wrote nothing since.
 * Otherwise it reports itself "unverified", and the DR site compares every chunk instead
 * (checksum resync: only chunks that differ are sent). Never a silent wrong copy.
 *
 * It presents itself to the receiver as a store: one server with one pseudo-generation (the
 * primary's images as they are) that deltas are written into. It stages nothing, so there is
 * nothing to recover; reading images back, verifying and the recovery bookkeeping belong to real
 * stores and are refused with FAILBACK_NOT_A_STORE.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { chunkDigests } from '../../core/digest.ts';
import { HavenError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { ensureRunDir } from '../../core/paths.ts';
import { protectedDisks } from '../../engine/index.ts';
import type { ProtectedDisk } from '../../engine/source.ts';
import { dirtyBitmapContext, mapExtents, NBD_STATE_DIRTY, NbdClient } from '../../nbd/index.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaSummary,
  type DeltaWriter,
  type Generation,
  type ImageReader,
  type ServerManifest,
  STORE_FORMAT_VERSION,
  type Store,
  type StoreDescriptor,
  type VerifyReport,
} from '../../store/types.ts';
import {
  bitmapAdd,
  bitmapProblem,
  bitmapRemove,
  exportImage,
  getServer,
  type ImageExport,
  isActiveState,
  qemuImgInfo,
  startDomain,
  type Virsh,
} from '../../virt/index.ts';
import { recoveryError } from '../errors.ts';
import { clearGuard } from '../guard.ts';

/** Prefix of the bitmaps failback leaves in the primary's images between passes. */
export const MARKER_PREFIX = 'failback-';

export interface SinkOptions {
  /** The primary's domain. */
  domain: string;
  /** The name the DR site uses for the server (its domain there); default `domain`. */
  sourceName?: string;
  /** The primary's bitmap that marks where its images still equal the DR copy's base. */
  since?: string;
  /** The DR checkpoint that base corresponds to (the pseudo-generation's point in time). */
  drPoint?: string;
  /** The last pass: afterwards clear the guard and (with `start`) start the server. */
  final?: boolean;
  start?: boolean;
  virsh: Virsh;
  runDir: string;
  log: Logger;
}

interface PrimaryState {
  disks: ProtectedDisk[];
  newest: Generation;
  verified: boolean;
  reason?: string;
}

function notAStore(what: string): never {
  throw recoveryError(
    'FAILBACK_NOT_A_STORE',
    'usage',
    `a failback receiver writes into a server's images; it cannot ${what}`,
    {
      hint: 'Use a store for this.',
    },
  );
}

export class PrimarySink implements Store {
  readonly kind = 'fs' as const;
  readonly location: string;
  readonly descriptor: StoreDescriptor;
  private state: PrimaryState | undefined;

  constructor(private readonly o: SinkOptions) {
    this.location = `failback:${o.domain}`;
    this.descriptor = {
      format: 'haven-store',
      version: STORE_FORMAT_VERSION,
      kind: 'fs',
      id: `failback:${o.domain}@${hostname()}`,
      createdAt: new Date().toISOString(),
      chunkSize: CHUNK_SIZE,
      digest: 'blake3',
    };
  }

  private get sourceName(): string {
    return this.o.sourceName ?? this.o.domain;
  }

  /** What the primary holds now: its disks and whether it provably equals the DR base. */
  private async inspect(): Promise<PrimaryState> {
    const server = await getServer(this.o.virsh, this.o.domain, { log: this.o.log });
    if (isActiveState(server.state)) {
      throw recoveryError(
        'FAILBACK_PRIMARY_RUNNING',
        'refused',
        `${this.o.domain} is running on the primary (${server.state})`,
        {
          hint: 'Failback writes into the primary’s disk images: shut the server down on the primary first.',
          details: { domain: this.o.domain, state: server.state },
        },
      );
    }
    const disks = protectedDisks(server);
    const check = this.o.since
      ? await unchangedSince(disks, this.o.since, this.o.runDir, this.o.log)
      : { clean: false, reason: 'no base to verify against' };
    const now = new Date().toISOString();
    const verified = check.clean && this.o.drPoint !== undefined;
    const newest: Generation = {
      id: verified ? `primary-at-${this.o.since}` : 'primary-unverified',
      seq: 1,
      // An unverified primary names no checkpoint: the DR side then compares every chunk.
      pointInTime: verified ? this.o.drPoint! : 'failback-unverified',
      takenAt: now,
      committedAt: now,
      mode: 'full',
      job: 'failback',
      disks: disks.map((d) => ({ name: d.name, size: d.size, image: d.path })),
      deltaBytes: 0,
      tests: [],
    };
    if (!verified)
      this.o.log.warn('the primary cannot prove it is unchanged: every chunk will be compared', {
        reason: check.reason,
      });
    return { disks, newest, verified, ...(check.reason ? { reason: check.reason } : {}) };
  }

  async manifest(server: string): Promise<ServerManifest | null> {
    if (server !== this.sourceName) return null;
    this.state ??= await this.inspect();
    return { server, copies: 1, generations: [this.state.newest], sourceDefinition: '', bootPriority: 100 };
  }

  /** Nothing is staged here: there is never anything to roll forward. */
  async recover(): Promise<string[]> {
    return [];
  }

  async listServers(): Promise<string[]> {
    return [this.sourceName];
  }

  async imagePath(server: string, _generationId: string, disk: string): Promise<string> {
    this.state ??= await this.inspect();
    const d = server === this.sourceName ? this.state.disks.find((x) => x.name === disk) : undefined;
    if (!d) throw recoveryError('FAILBACK_DISK_MISMATCH', 'not-found', `no disk ${disk} of ${server} here`);
    return d.path;
  }

  openImage(): Promise<ImageReader> {
    return notAStore('serve image reads');
  }

  readDigests(): Promise<Buffer> {
    return notAStore('serve stored digests');
  }

  verify(): Promise<VerifyReport> {
    return notAStore('verify generations');
  }

  definitionPath(): string {
    return notAStore('hold definitions');
  }

  recordTest(): Promise<void> {
    return notAStore('record drills');
  }

  setBootPriority(): Promise<void> {
    return notAStore('keep boot priorities');
  }

  setActiveAtDr(): Promise<void> {
    return notAStore('record activations');
  }

  async close(): Promise<void> {}

  async openDelta(meta: DeltaMeta): Promise<DeltaWriter> {
    if (meta.server !== this.sourceName) {
      throw recoveryError(
        'FAILBACK_WRONG_SERVER',
        'usage',
        `this receiver takes ${this.sourceName}, not ${meta.server}`,
        {
          details: { expected: this.sourceName, got: meta.server },
        },
      );
    }
    // Again, now: an earlier attempt of this pass may have written into the images.
    const state = await this.inspect();
    this.state = state;
    if (meta.baseGenerationId !== state.newest.id || (meta.mode === 'incremental' && !state.verified)) {
      throw new HavenError(
        'STORE_BASE_MISMATCH',
        `the primary's images are not at ${meta.baseGenerationId ?? 'nothing'} any more (${state.reason ?? state.newest.id})`,
        {
          kind: 'conflict',
          hint: 'The DR site starts this pass again, comparing every chunk.',
          details: { base: meta.baseGenerationId, primary: state.newest.id, reason: state.reason },
        },
      );
    }
    const byName = new Map(state.disks.map((d) => [d.name, d]));
    const mismatch =
      meta.disks.length !== state.disks.length || meta.disks.some((d) => byName.get(d.name)?.size !== d.size);
    if (mismatch) {
      throw recoveryError(
        'FAILBACK_DISK_MISMATCH',
        'conflict',
        `the DR copy's disks differ from the primary's`,
        {
          hint: 'Failback needs the same disks with the same sizes on both sides; restore the server instead (haven restore).',
          details: {
            dr: meta.disks,
            primary: state.disks.map((d) => ({ name: d.name, size: d.size })),
          },
        },
      );
    }
    return PrimaryWriter.open(meta, state.disks, this.o);
  }
}

/** True when every disk has `bitmap`, consistent, with no block marked dirty. */
export async function unchangedSince(
  disks: readonly ProtectedDisk[],
  bitmap: string,
  runDir: string,
  log: Logger,
): Promise<{ clean: boolean; reason?: string }> {
  for (const d of disks) {
    if (d.format !== 'qcow2')
      return { clean: false, reason: `${d.name} is ${d.format}: no bitmaps to prove it unchanged` };
    const problem = bitmapProblem(await qemuImgInfo(d.path, { format: 'qcow2', log }), bitmap);
    if (problem) return { clean: false, reason: `bitmap ${bitmap} of ${d.name} is ${problem}` };
    const exp = await exportImage({
      path: d.path,
      format: 'qcow2',
      bitmap,
      readOnly: true,
      exportName: d.name,
      socketPath: join(ensureRunDir(runDir, 'nbd'), `fbc-${randomUUID().slice(0, 12)}.sock`),
      log,
    });
    try {
      const context = dirtyBitmapContext(bitmap);
      const client = await NbdClient.connect({
        socketPath: exp.socketPath,
        exportName: d.name,
        metaContexts: [context],
        log,
      });
      try {
        for await (const e of mapExtents(client, context)) {
          if (e.flags & NBD_STATE_DIRTY) {
            return { clean: false, reason: `${d.name} was written at byte ${e.offset} after ${bitmap}` };
          }
        }
      } finally {
        await client.close();
      }
    } finally {
      await exp.stop();
    }
  }
  return { clean: true };
}

const READ_PIECE = 4 * 1024 * 1024;

interface OpenDisk {
  disk: ProtectedDisk;
  exp: ImageExport;
  client: NbdClient;
  dataBytes: number;
  zeroBytes: number;
}

/** Writes one pass into the primary's images: positioned writes through qemu-nbd. */
export class PrimaryWriter implements DeltaWriter {
  readonly deltaId = randomUUID();
  readonly resumed = null;
  private sealed = false;
  private closed = false;

  private constructor(
    private readonly meta: DeltaMeta,
    private readonly disks: Map<string, OpenDisk>,
    private readonly o: SinkOptions,
  ) {}

  static async open(meta: DeltaMeta, disks: ProtectedDisk[], o: SinkOptions): Promise<PrimaryWriter> {
    const open = new Map<string, OpenDisk>();
    try {
      for (const d of disks) {
        const exp = await exportImage({
          path: d.path,
          format: d.format,
          readOnly: false,
          exportName: d.name,
          socketPath: join(ensureRunDir(o.runDir, 'nbd'), `fbw-${randomUUID().slice(0, 12)}.sock`),
          log: o.log,
        });
        try {
          const client = await NbdClient.connect({
            socketPath: exp.socketPath,
            exportName: d.name,
            log: o.log,
          });
          open.set(d.name, { disk: d, exp, client, dataBytes: 0, zeroBytes: 0 });
        } catch (e) {
          await exp.stop();
          throw e;
        }
      }
    } catch (e) {
      await stopAll(open);
      throw e;
    }
    o.log.info('writing into the primary’s images', {
      domain: o.domain,
      pass: meta.job,
      pointInTime: meta.pointInTime,
    });
    return new PrimaryWriter(meta, open, o);
  }

  private disk(name: string): OpenDisk {
    const d = this.disks.get(name);
    if (!d) {
      throw recoveryError('FAILBACK_DISK_MISMATCH', 'protocol', `no disk ${name} on the primary`, {
        details: { disk: name },
      });
    }
    return d;
  }

  async expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer> {
    const d = this.disk(disk);
    const parts: Buffer[] = [];
    const end = Math.min(d.disk.size, (fromChunk + count) * CHUNK_SIZE);
    for (let off = fromChunk * CHUNK_SIZE; off < end; off += READ_PIECE) {
      const data = await d.client.read(off, Math.min(READ_PIECE, end - off));
      parts.push(chunkDigests('blake3', data, CHUNK_SIZE));
    }
    return Buffer.concat(parts);
  }

  async writeData(disk: string, offset: number, data: Buffer): Promise<void> {
    const d = this.disk(disk);
    await d.client.write(offset, data);
    d.dataBytes += data.length;
  }

  async writeZero(disk: string, offset: number, length: number): Promise<void> {
    const d = this.disk(disk);
    if (d.client.flags.canWriteZeroes) {
      await d.client.writeZeroes(offset, length);
    } else {
      const zero = Buffer.alloc(Math.min(length, READ_PIECE));
      for (let off = offset; off < offset + length; off += zero.length) {
        await d.client.write(off, zero.subarray(0, Math.min(zero.length, offset + length - off)));
      }
    }
    d.zeroBytes += length;
  }

  private async flush(): Promise<void> {
    for (const d of this.disks.values()) if (d.client.flags.canFlush) await d.client.flush();
  }

  async checkpoint(): Promise<void> {
    await this.flush();
  }

  async seal(summary: DeltaSummary): Promise<void> {
    for (const [name, d] of this.disks) {
      const s = summary.disks[name] ?? { dataBytes: 0, zeroBytes: 0 };
      if (s.dataBytes !== d.dataBytes || s.zeroBytes !== d.zeroBytes) {
        throw new HavenError(
          'STORE_SUMMARY_MISMATCH',
          `disk ${name}: the sender sent other amounts than arrived`,
          {
            kind: 'integrity',
            details: { disk: name, summary: s, received: { dataBytes: d.dataBytes, zeroBytes: d.zeroBytes } },
          },
        );
      }
    }
    await this.flush();
    this.sealed = true;
  }

  async commit(): Promise<Generation> {
    if (!this.sealed) {
      throw new HavenError('STORE_DELTA_STATE', 'commit before the delta was sealed', { kind: 'protocol' });
    }
    await this.close();
    const { o, meta } = this;
    const qcow2 = [...this.disks.values()].map((d) => d.disk).filter((d) => d.format === 'qcow2');
    // qemu-nbd has exited: the images' bitmaps are stored and may be edited.
    for (const d of qcow2) {
      const info = await qemuImgInfo(d.path, { format: 'qcow2', log: o.log });
      for (const b of info.bitmaps) {
        if (b.name.startsWith(MARKER_PREFIX)) await bitmapRemove(d.path, b.name, { log: o.log });
      }
      // The next pass proves from this marker that the primary is still where this pass left it.
      if (!o.final) await bitmapAdd(d.path, `${MARKER_PREFIX}${meta.pointInTime}`, { log: o.log });
    }
    if (o.final) {
      if (await clearGuard(o.virsh, o.domain))
        o.log.info('the guard against starting the stale copy was removed', { domain: o.domain });
      if (o.start) {
        await startDomain(o.virsh, o.domain);
        o.log.info('the server runs on the primary again', { domain: o.domain });
      }
    }
    const now = new Date().toISOString();
    const bytes = [...this.disks.values()].reduce((n, d) => n + d.dataBytes, 0);
    return {
      id: `primary-at-${meta.pointInTime}`,
      seq: 1,
      pointInTime: meta.pointInTime,
      takenAt: meta.takenAt,
      committedAt: now,
      mode: meta.mode,
      job: meta.job,
      disks: [...this.disks.values()].map((d) => ({
        name: d.disk.name,
        size: d.disk.size,
        image: d.disk.path,
      })),
      deltaBytes: bytes,
      tests: [],
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await stopAll(this.disks);
  }

  /** Writes cannot be taken back; without a new marker the next attempt compares every chunk. */
  async discard(): Promise<void> {
    await this.close();
  }
}

async function stopAll(disks: Map<string, OpenDisk>): Promise<void> {
  for (const d of disks.values()) {
    await d.client.close().catch(() => {});
    await d.exp.stop();
  }
}
