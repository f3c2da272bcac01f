/**
 * Opening a server's delta (Store.openDelta after its checks): continue a partial delta that
 * still fits, else start a fresh one. A delta is *direct* when no generation exists yet (the
 * first run writes into the images) and *staged* otherwise (kind.ts).
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { HavenError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/log.ts';
import { storeError } from '../../errors.ts';
import type { DeltaMeta, DeltaWriter, Generation } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { INDEX_HEADER_BYTES } from '../delta-log.ts';
import { deleteDelta, listDeltaRecords, sameDisks, stagingRoot } from '../deltas.ts';
import { ensureDir } from '../files.ts';
import type { HeldLock } from '../lock.ts';
import type { DeltaRecord } from '../records.ts';
import { DirectDelta } from './direct.ts';
import type { Closeable, DeltaDisk } from './disk.ts';
import type { DeltaKind } from './kind.ts';
import { StagedDelta } from './staged.ts';
import { StoreDeltaWriter, type WriterHost } from './writer.ts';

export interface OpenDeltaArgs {
  ctx: StoreContext;
  meta: DeltaMeta;
  /** The newest generation, which the caller checked `meta` applies to; null for a first run. */
  base: Generation | null;
  /** The server's writer lock, held by the caller; the writer releases it when it ends. */
  lock: HeldLock;
  host: WriterHost;
  log: Logger;
  /** For a fresh delta: checks its image names against other servers and writes its first record. */
  register: (record: DeltaRecord) => Promise<void>;
}

/**
 * Continues the server's partial delta if one fits (same kind, base and disks), else starts
 * afresh; partials that no longer fit are removed. The caller holds the server lock and has
 * rolled forward any interrupted commit.
 */
export async function openDeltaWriter(args: OpenDeltaArgs): Promise<DeltaWriter> {
  const { ctx, meta, log } = args;
  const kind = kindFor(args);
  const partials = (await listDeltaRecords(ctx, meta.server)).filter((r) => r.state === 'open').reverse();
  let candidate: DeltaRecord | null = null;
  for (const r of partials) {
    const fits =
      r.kind === kind &&
      r.meta.baseGenerationId === meta.baseGenerationId &&
      sameDisks(r.meta.disks, meta.disks);
    if (!candidate && fits) candidate = r;
    else {
      log.info('discarding a partial delta that no longer fits (base or disks changed)', { deltaId: r.id });
      await deleteDelta(ctx, r, log);
    }
  }
  if (candidate) {
    const writer = await resumeDelta(args, candidate);
    if (writer) return writer;
    await deleteDelta(ctx, candidate, log);
  }
  return createDelta(args);
}

/** A first run (no generation yet) writes straight into the images; every later run is staged. */
function kindFor(args: OpenDeltaArgs): DeltaRecord['kind'] {
  return args.base ? 'staged' : 'direct';
}

async function createDelta(args: OpenDeltaArgs): Promise<DeltaWriter> {
  const { ctx, meta } = args;
  const id = randomUUID();
  const kind = kindFor(args);
  const recordDir = ctx.layout.deltaDir(meta.server, id);
  const now = new Date().toISOString();
  const perDisk = <T>(value: (size: number) => T) =>
    Object.fromEntries(meta.disks.map((d) => [d.name, value(d.size)]));
  const { stagingDir } = ctx;
  const record: DeltaRecord = {
    format: 'haven-delta',
    version: 1,
    id,
    server: meta.server,
    generationId: randomUUID(),
    kind,
    state: 'open',
    meta: structuredClone(meta),
    dataDir:
      kind === 'staged' && stagingDir
        ? join(stagingRoot(stagingDir, ctx.descriptor.id), meta.server, id)
        : recordDir,
    createdAt: now,
    updatedAt: now,
    watermarks: {},
    counts: perDisk(() => ({ dataBytes: 0, zeroBytes: 0 })),
    dataLength: 0,
    indexLength: INDEX_HEADER_BYTES,
    floors: perDisk((size) => size),
    dataHigh: perDisk(() => 0),
  };
  // The record first: whatever else a crash leaves behind is then owned by a delta that
  // discard() or a resume can clean up.
  await args.register(record);
  const writer = await openWriter(args, record, true);
  args.log.verbose('delta opened', { deltaId: id, kind, disks: meta.disks.length });
  return writer;
}

/** Continues `record`; null when its files cannot be brought back to its last checkpoint. */
async function resumeDelta(args: OpenDeltaArgs, record: DeltaRecord): Promise<DeltaWriter | null> {
  const { meta, log } = args;
  const fresh = record.meta.disks.every((d) => {
    const c = record.counts[d.name];
    return !c || (c.dataBytes === 0 && c.zeroBytes === 0);
  });
  const cannotResume = (e: unknown, codes: string[], message: string) => {
    if (!(e instanceof HavenError && codes.includes(e.code))) return false;
    log.warn(message, { deltaId: record.id, reason: e.message });
    return true;
  };
  let writer: OpenedWriter;
  try {
    writer = await openWriter(args, record, fresh);
  } catch (e) {
    const gone = 'partial delta is incomplete on disk (staging drive gone?); starting afresh';
    if (cannotResume(e, ['FILE_NOT_FOUND', 'STORE_PARTIAL_DAMAGED'], gone)) return null;
    throw e;
  }
  try {
    await writer.reconcile();
  } catch (e) {
    await writer.closeFiles();
    if (cannotResume(e, ['STORE_PARTIAL_DAMAGED'], 'partial delta cannot be resumed; starting afresh'))
      return null;
    throw e;
  }
  const resumed = await writer.beginResumedAttempt(meta);
  log.info('resuming a partial delta', {
    deltaId: record.id,
    stagedBytes: resumed.stagedBytes,
    samePointInTime: resumed.pointInTime === meta.pointInTime,
  });
  return writer;
}

/** A writer just opened, before open.ts hands it out. */
type OpenedWriter = DeltaWriter &
  Pick<StoreDeltaWriter<unknown>, 'reconcile' | 'beginResumedAttempt' | 'closeFiles'>;

/**
 * Opens the files of `record`'s kind (with `create`, makes them, durably) and assembles the
 * writer. Whatever was opened is closed again if anything fails.
 */
async function openWriter(args: OpenDeltaArgs, record: DeltaRecord, create: boolean): Promise<OpenedWriter> {
  const opened: Closeable[] = [];
  const track = <T extends Closeable>(c: T): T => {
    opened.push(c);
    return c;
  };
  const { ctx, base, log } = args;
  const assemble = async <K>(parts: { kind: DeltaKind<K>; disks: DeltaDisk<K>[] }) => {
    const writer = new StoreDeltaWriter(ctx, record, parts.kind, parts.disks, args.lock, args.host, log);
    if (create) await writer.makeCreatedDurable();
    return writer;
  };
  try {
    await ensureDir(record.dataDir);
    if (record.kind === 'direct')
      return await assemble(await DirectDelta.open({ ctx, record, create, log, track }));
    if (!base) {
      throw storeError('STORE_DELTA_STATE', 'internal', `staged delta ${record.id} has no base generation`, {
        hint: 'This is a bug in Haven; please report it with the log file of this run.',
      });
    }
    return await assemble(await StagedDelta.open({ ctx, record, base, create, log, track }));
  } catch (e) {
    await Promise.all(opened.map((c) => c.close().catch(() => {})));
    throw e;
  }
}
