/**
 * The point-in-time journal's record (docs/continuous.md, "The journal at the target"): per
 * server, `.haven/servers/<server>/pit/`, beside the rotating generations:
 *
 * - `pit.json`: the window, the identifiers, the base point and the segments after it, in order;
 *   replaced atomically (write, fsync, rename, fsync the directory) at every change;
 * - `base/<disk>.img`: a sparse raw image, the disks at the base point (the window's oldest);
 * - `base/<disk>.sums`: per chunk, the digest of the base image (what `haven verify` checks the
 *   base against; folding applies the folded segments' digests to it as to the image);
 * - `head/<disk>.sums`: per chunk, the digest of the disk after the newest segment (what a
 *   checksum resync compares against); `sumsSeq` says which segment it reflects;
 * - `seg/<id>/<disk>.data|.idx`: a segment, the staged-delta idea in its simplest form: the data
 *   of its extents back to back, and their list (offset, length, zero or data, digests).
 *
 * Folding segments into the base (the window) records `folding` first, applies them in order and
 * only then drops them: applying the same segments in the same order again gives the same base,
 * so a crash anywhere in between is repaired by doing it again (recoverJournal).
 */
import { join } from 'node:path';
import { z } from 'zod';
import { checkName } from '../../../core/names.ts';
import { storeError } from '../../errors.ts';
import type { DiskSpec, GenerationIds, SegmentRecord } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { readJson, writeFileDurable } from '../files.ts';
import { checkId, under } from '../names.ts';

const idsSchema = z.object({
  current: z.string(),
  history: z.array(z.string()),
  lastWriter: z
    .object({ side: z.enum(['primary', 'dr']), by: z.string().optional(), at: z.string() })
    .optional(),
});

const segmentSchema = z.object({
  id: z.string(),
  seq: z.number().int().positive(),
  pointInTime: z.string(),
  takenAt: z.string(),
  committedAt: z.string(),
  consistent: z.boolean(),
  generationId: z.string(),
  disks: z.array(z.object({ name: z.string(), size: z.number().int().positive() })),
  dataBytes: z.number().int().nonnegative(),
  zeroBytes: z.number().int().nonnegative(),
  sourceOff: z.boolean().optional(),
});

const pitSchema = z.object({
  version: z.literal(1),
  server: z.string(),
  disks: z.array(z.object({ name: z.string(), size: z.number().int().positive() })),
  windowMs: z.number().int().nonnegative(),
  ids: idsSchema.nullable(),
  /** The point the base images hold; null while the base is the empty disk. */
  base: segmentSchema.nullable(),
  segments: z.array(segmentSchema),
  /** The newest segment the head digests reflect. */
  sumsSeq: z.number().int().nonnegative(),
  /** Segments up to this seq are being applied to the base (crash-safe roll-forward). */
  folding: z.number().int().positive().optional(),
  failedBack: z.object({ generationId: z.string(), at: z.string() }).optional(),
});

export type PitFile = z.infer<typeof pitSchema>;

export class PitLayout {
  constructor(
    private readonly ctx: StoreContext,
    readonly server: string,
  ) {
    checkName('server', server);
  }
  get dir(): string {
    return join(this.ctx.layout.serverDir(this.server), 'pit');
  }
  get file(): string {
    return join(this.dir, 'pit.json');
  }
  get segmentsDir(): string {
    return join(this.dir, 'seg');
  }
  base(disk: string): string {
    return under(join(this.dir, 'base'), `${checkName('disk', disk)}.img`);
  }
  baseSums(disk: string): string {
    return under(join(this.dir, 'base'), `${checkName('disk', disk)}.sums`);
  }
  headSums(disk: string): string {
    return under(join(this.dir, 'head'), `${checkName('disk', disk)}.sums`);
  }
  segmentDir(id: string): string {
    return under(this.segmentsDir, checkId('delta', id));
  }
  data(id: string, disk: string): string {
    return join(this.segmentDir(id), `${checkName('disk', disk)}.data`);
  }
  index(id: string, disk: string): string {
    return join(this.segmentDir(id), `${checkName('disk', disk)}.idx`);
  }
}

export async function readPit(p: PitLayout): Promise<PitFile | null> {
  return readJson(p.file, (v) => {
    const r = pitSchema.safeParse(v);
    if (!r.success) {
      throw storeError('STORE_JOURNAL_INVALID', 'integrity', `${p.file} is not a valid journal record`, {
        hint: 'Run `haven verify`; the journal was changed outside Haven.',
        details: { path: p.file, issues: r.error.issues.slice(0, 5) },
      });
    }
    return r.data;
  });
}

export function writePit(p: PitLayout, pit: PitFile): Promise<void> {
  return writeFileDurable(p.file, `${JSON.stringify(pit, null, 1)}\n`);
}

/** The consistent segments, and the base point: every point `--at` may select, oldest first. */
export function pointsOf(pit: PitFile): SegmentRecord[] {
  return [...(pit.base ? [pit.base] : []), ...pit.segments.filter((s) => s.consistent)];
}

export function emptyPit(server: string, disks: DiskSpec[], windowMs: number): PitFile {
  return { version: 1, server, disks, windowMs, ids: null, base: null, segments: [], sumsSeq: 0 };
}

export type { GenerationIds };
