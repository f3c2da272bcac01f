/**
 * An RBD image open for writing: qemu-nbd exports it through QEMU's rbd driver (librbd) on a
 * private unix socket, and Haven's NBD client (nbd/) writes to it: positioned writes with up to 16
 * in flight, WRITE_ZEROES for holes (librbd discards or zeroes; on a clone it never lets the
 * parent's data show through), FLUSH for durability (librbd's flush: every write acknowledged by
 * the OSDs). docs/store-rbd.md says why this and not `rbd import-diff` or a native binding.
 *
 * Bounded waits: the image is opened with the store's client timeouts (rados_osd_op_timeout,
 * client_mount_timeout), and the NBD client breaks the connection when qemu-nbd answers nothing
 * for the store's deadline (taking the image's exclusive lock on the first write is bounded by no
 * Ceph timeout). A broken or failed write is explained once (`explain`: a full pool is NO_SPACE)
 * and the export is stopped.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { NbdClient, type QemuNbdServer, startQemuNbd } from '../../nbd/index.ts';
import type { ByteRange } from '../common/holes.ts';
import type { WritableImage } from '../common/images.ts';
import { EXPORT_DIR_PREFIX, markOwner } from './orphans.ts';

export interface RbdWritableOptions {
  /** `rbd:pool/image`, as logs name it. */
  path: string;
  /** QEMU's filename of the image with the client settings (`rbd:pool/image:id=…:conf=…`). */
  qemuFilename: string;
  /** The NBD request deadline: qemu-nbd answering nothing this long breaks the connection. */
  deadlineMs: number;
  /** Turns a failure into the error to report (a full pool: NO_SPACE). */
  explain(e: unknown): Promise<unknown>;
  /** Resizes the image itself (the broker), while no export holds it. */
  resizeImage(size: number): Promise<void>;
  log: Logger;
}

/** Writes in flight on the NBD connection (the apply step keeps up to 16 image writes running). */
const IN_FLIGHT = 16;

export class RbdWritable implements WritableImage {
  readonly out: { write(buf: Buffer, position: number): Promise<void> };

  private constructor(
    private readonly o: RbdWritableOptions,
    private readonly dir: string,
    private server: QemuNbdServer,
    private client: NbdClient,
  ) {
    this.out = { write: (buf, position) => this.guard(() => this.client.write(position, buf)) };
  }

  get path(): string {
    return this.o.path;
  }

  static async open(o: RbdWritableOptions): Promise<RbdWritable> {
    const dir = await mkdtemp(join(tmpdir(), EXPORT_DIR_PREFIX));
    try {
      await markOwner(dir);
      const { server, client } = await RbdWritable.connect(o, dir);
      return new RbdWritable(o, dir, server, client);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw await o.explain(e);
    }
  }

  private static async connect(o: RbdWritableOptions, dir: string) {
    const server = await startQemuNbd({
      image: o.qemuFilename,
      format: 'raw',
      socketPath: join(dir, 'nbd.sock'),
      pidFile: join(dir, 'nbd.pid'),
      cache: 'none',
      discard: 'unmap',
      persistent: true,
      log: o.log,
    });
    try {
      const client = await NbdClient.connect({
        socketPath: join(dir, 'nbd.sock'),
        requestTimeoutMs: o.deadlineMs,
        maxInFlight: IN_FLIGHT,
        log: o.log,
      });
      return { server, client };
    } catch (e) {
      await server.stop();
      throw e;
    }
  }

  async size(): Promise<number> {
    return this.client.size;
  }

  /** The export's size is fixed when it starts: resizing reopens it. */
  async resize(size: number): Promise<void> {
    if (size === this.client.size) return;
    await this.stop();
    await this.o.resizeImage(size);
    const { server, client } = await RbdWritable.connect(this.o, this.dir);
    this.server = server;
    this.client = client;
  }

  async punch(ranges: ByteRange[], _log: Logger): Promise<void> {
    await this.guard(async () => {
      await Promise.all(ranges.map((r) => this.client.writeZeroes(r.offset, r.length)));
    });
  }

  datasync(): Promise<void> {
    return this.guard(() => this.client.flush());
  }

  sync(): Promise<void> {
    return this.guard(() => this.client.flush());
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  private async stop(): Promise<void> {
    await this.client.close().catch(() => {});
    await this.server.stop();
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw await this.o.explain(e);
    }
  }
}
