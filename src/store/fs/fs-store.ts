/**
 * The filesystem store: raw image files named exactly as DESIGN §4.1, with Haven's metadata
 * beside them in the same directory (docs/store-format.md). What every store kind does alike is
 * common/store-base.ts; here: opening and creating a store directory, and what depends on images
 * being files — reading one, and verify.
 */
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { DefinitionRules } from '../../core/definition-context.ts';
import type { DigestAlgorithm } from '../../core/digest.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { checkName } from '../../core/names.ts';
import { emptyVerifyReport, isWithin } from '../common/checks.ts';
import type { StoreContext } from '../common/context.ts';
import { openDescriptor } from '../common/descriptor.ts';
import { ensureDir, io, readAllAt } from '../common/files.ts';
import { StoreBase } from '../common/store-base.ts';
import { storeError } from '../errors.ts';
import type { ImageReader, VerifyOptions, VerifyReport } from '../types.ts';
import { FsImages } from './images.ts';
import { FsLayout } from './layout.ts';
import { verifyServer } from './verify.ts';

export interface FsStoreOptions {
  /** Initialise the directory as a store if it holds none yet. */
  create?: boolean;
  /** Digest algorithm of a new store (default blake3); must match an existing store's. */
  digest?: DigestAlgorithm;
  /** Where staged deltas go (a target cache drive); default the store's own `.haven` area. */
  stagingDir?: string;
  log?: Logger;
  /**
   * Write images and staged data past the page cache (O_DIRECT) where the filesystem allows it;
   * default true. Off, every write goes through the page cache (common/direct-io.ts says why not).
   */
  directIo?: boolean;
  /**
   * Rotate by cloning the newest generation where the filesystem has reflinks (XFS, btrfs);
   * default true. Off, generations share no blocks and each rotation replays deltas.
   */
  reflinks?: boolean;
  /** How long a reader waits for a running rotation's short renaming steps (default 30 s). */
  busyWaitMs?: number;
  /**
   * The DR host's settings for definitions (config `definitions`), asked for only when a new
   * server's definition is written; without it the rule applies with no allowances.
   */
  definitionRules?: () => Promise<DefinitionRules>;
}

/** Largest single ImageReader.read (memory is the caller's, but bounded here). */
const MAX_READ_BYTES = 64 * 1024 * 1024;

export async function openFsStore(dir: string, options: FsStoreOptions = {}): Promise<FsStore> {
  const layout = new FsLayout(dir);
  const log = options.log ?? silentLogger;
  const descriptor = await openDescriptor(layout, 'fs', {
    log,
    ...(options.create ? { create: true } : {}),
    ...(options.digest ? { digest: options.digest } : {}),
  });
  const stagingDir = options.stagingDir ? resolve(options.stagingDir) : undefined;
  if (stagingDir) await ensureDir(stagingDir);
  const directIo = options.directIo ?? true;
  const images = new FsImages(layout, { directIo, reflinks: options.reflinks ?? true });
  return new FsStore(
    layout,
    {
      layout,
      images,
      descriptor,
      log,
      stagingDir,
      directIo,
      ...(options.definitionRules ? { definitionRules: options.definitionRules } : {}),
    },
    options.busyWaitMs ?? 30_000,
  );
}

export function createFsStore(dir: string, options: Omit<FsStoreOptions, 'create'> = {}): Promise<FsStore> {
  return openFsStore(dir, { ...options, create: true });
}

export class FsStore extends StoreBase {
  readonly kind = 'fs' as const;

  constructor(
    private readonly layout: FsLayout,
    ctx: StoreContext,
    busyWaitMs: number,
  ) {
    super(ctx, layout.root, busyWaitMs);
  }

  async openImage(server: string, generationId: string, disk: string): Promise<ImageReader> {
    const found = await this.findDisk(server, generationId, disk);
    const path = this.layout.image(server, disk, found.view.fileSeq(found.generation));
    const fh = await io(path, () => open(path, 'r'));
    const size = found.disk.size;
    const st = await fh.stat();
    if (st.size !== size) {
      await fh.close();
      throw storeError(
        'STORE_SIZE_MISMATCH',
        'integrity',
        `${path} is ${st.size} bytes, the manifest says ${size}`,
        {
          hint: 'Run `haven verify`; the image was changed outside Haven.',
        },
      );
    }
    return {
      size,
      async read(offset: number, length: number): Promise<Buffer> {
        if (!isWithin(offset, length, size) || length > MAX_READ_BYTES) {
          throw storeError(
            'STORE_BAD_RANGE',
            'usage',
            `read ${offset}+${length} is outside the image (${size} bytes) or over ${MAX_READ_BYTES} bytes`,
            { hint: 'Read inside the image, in pieces of at most 64 MiB.' },
          );
        }
        const buf = Buffer.allocUnsafe(length);
        await io(path, () => readAllAt(fh, buf, length, offset));
        return buf;
      },
      close: () => fh.close(),
    };
  }

  async verify(server?: string, options: VerifyOptions = {}): Promise<VerifyReport> {
    const report = emptyVerifyReport();
    const servers = server === undefined ? await this.listServers() : [checkName('server', server)];
    // Views first, so progress has its total from the start.
    const views = [];
    for (const s of servers) views.push({ s, v: await this.view(s) });
    const progress = { done: 0, total: 0 };
    if (options.readImages !== false) {
      for (const { v } of views) {
        for (const g of v.manifest?.generations ?? []) {
          if (!options.generationId || g.id === options.generationId) {
            progress.total += g.disks.reduce((n, d) => n + d.size, 0);
          }
        }
      }
    }
    for (const { s, v } of views) await verifyServer(this.ctx, this.layout, s, v, options, report, progress);
    report.ok = report.problems.length === 0;
    return report;
  }
}
