/**
 * Registering a new delta (Store.openDelta): its image names checked against every other
 * server's, committed or partial (docs/design.md §4.1: `<server>_<disk>` prefixes must differ), and its
 * first record written, under a short store-wide lock so two new servers cannot race.
 */
import { isSafeName } from '../../core/names.ts';
import { storeError } from '../errors.ts';
import type { StoreContext } from './context.ts';
import { listDeltaRecords, writeDeltaRecord } from './deltas.ts';
import { ensureDir, fsyncDir } from './files.ts';
import { acquireLock } from './lock.ts';
import { listServerDirs, readManifest } from './metadata.ts';
import { findNameCollision } from './names.ts';
import type { DeltaRecord } from './records.ts';

export async function registerDelta(ctx: StoreContext, record: DeltaRecord): Promise<void> {
  const lock = await acquireLock(ctx.layout.storeLock, {
    purpose: 'name check',
    log: ctx.log,
    waitMs: 30_000,
    locked: (h) =>
      storeError('STORE_BUSY', 'conflict', `the store's name registry stayed locked by pid ${h.pid}`, {
        hint: 'Another Haven process is opening a delta; try again.',
      }),
  });
  try {
    const clash = findNameCollision(
      { server: record.server, disks: record.meta.disks.map((d) => d.name) },
      await otherServersDisks(ctx, record.server),
    );
    if (clash) {
      throw storeError(
        'STORE_NAME_COLLISION',
        'conflict',
        `images of ${record.server} disk ${clash.disk} would be named like those of ${clash.otherServer} disk ${clash.otherDisk} (${clash.prefix}_N.raw)`,
        {
          hint: 'Rename one of the servers or disks, or replicate one of them to another store.',
          details: clash,
        },
      );
    }
    await ensureDir(ctx.layout.deltaDir(record.server, record.id));
    await writeDeltaRecord(ctx, record);
    await fsyncDir(ctx.layout.deltasDir(record.server));
  } finally {
    await lock.release();
  }
}

/** Every other server's disk names: its generations' and its deltas'. */
async function otherServersDisks(ctx: StoreContext, server: string) {
  const others: { server: string; disks: string[] }[] = [];
  for (const other of await listServerDirs(ctx)) {
    if (!isSafeName(other) || other === server) continue;
    const manifest = await readManifest(ctx, other);
    const disks = new Set(manifest?.generations.flatMap((g) => g.disks.map((d) => d.name)) ?? []);
    for (const r of await listDeltaRecords(ctx, other)) for (const d of r.meta.disks) disks.add(d.name);
    others.push({ server: other, disks: [...disks] });
  }
  return others;
}
