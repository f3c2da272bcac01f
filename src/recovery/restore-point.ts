/**
 * `haven restore --at <time|point>`: writes a point of a server's journal (docs/continuous.md)
 * back as raw images and defines the server, as restore.ts does for a generation. The store
 * materialises the point (a sparse copy of the journal's base, then its segments up to the
 * point, in order); the journal itself is only read. `--at` takes a point's id, or a time: the
 * newest point taken at or before it.
 */
import { mkdir, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ioError, UsageError } from '../core/errors.ts';
import { checkName } from '../core/names.ts';
import type { Generation, JournalPoint, Store } from '../store/types.ts';
import { defineDomain } from '../virt/index.ts';
import { recoveryError } from './errors.ts';
import {
  allocated,
  checkDomainFree,
  planRestore,
  type RestoredDisk,
  type RestoreOptions,
  type RestoreResult,
  restoredXml,
} from './restore.ts';

/** The point `at` names: a point id, or the newest point taken at or before a time. */
export async function choosePoint(store: Store, server: string, at: string): Promise<JournalPoint> {
  const points = (await store.journalPoints?.(server)) ?? [];
  if (points.length === 0) {
    throw recoveryError(
      'RECOVERY_NO_JOURNAL',
      'not-found',
      `the store holds no journal of points for ${server}`,
      {
        hint: 'Points exist for servers protected with `haven protect --continuous`; restore a generation with --generation K.',
        details: { server },
      },
    );
  }
  const byId = points.find((p) => p.id === at);
  if (byId) return byId;
  const when = Date.parse(at);
  if (Number.isNaN(when)) {
    throw new UsageError(`--at takes a point id or a time (ISO 8601), got ${JSON.stringify(at)}`);
  }
  const before = points.filter((p) => Date.parse(p.takenAt) <= when).at(-1);
  if (!before) {
    throw recoveryError(
      'RECOVERY_POINT_OUTSIDE_WINDOW',
      'not-found',
      `${server}'s journal holds no point at or before ${at}`,
      {
        hint: `The oldest point is from ${points[0]?.takenAt}; list them with \`haven images ${server} --store <store> --points\`.`,
        details: { server, at, oldest: points[0]?.takenAt ?? null },
      },
    );
  }
  return before;
}

/** The point as restore's definition code sees a generation (its disks and its identity). */
export function pointAsGeneration(p: JournalPoint, server: string): Generation {
  return {
    id: p.id,
    seq: p.seq,
    pointInTime: p.pointInTime,
    takenAt: p.takenAt,
    committedAt: p.committedAt,
    mode: 'incremental',
    job: 'continuous',
    disks: p.disks.map((d) => ({ ...d, image: `${server}_${d.name}` })),
    deltaBytes: 0,
    tests: [],
  };
}

export async function restorePoint(o: RestoreOptions & { at: string }): Promise<RestoreResult> {
  const started = Date.now();
  if ((o.format ?? 'raw') !== 'raw')
    throw new UsageError('--at restores raw images only; leave out --format');
  if (!o.store.materialisePoint) throw new UsageError('this store keeps no journal of points');
  const name = o.name === undefined ? o.server : checkName('server', o.name);
  const log = o.log.child({ server: o.server });
  const dir = resolve(o.to);
  const define = o.define !== false;
  if (define) await checkDomainFree(o.virsh, name);
  const point = await choosePoint(o.store, o.server, o.at);
  const generation = pointAsGeneration(point, o.server);
  const { targets, result } = await planRestore(o, generation, name, dir, 'raw', log);
  result.point = true;
  if (o.dryRun) return result;
  await mkdir(dir, { recursive: true }).catch((e) => Promise.reject(ioError(e, dir)));
  await o.store.materialisePoint(o.server, point.id, new Map(targets.map((t) => [t.disk, t.path])), o.signal);
  const disks: RestoredDisk[] = [];
  for (const t of targets) disks.push({ ...t, allocated: await allocated(t.path) });
  result.disks = disks;
  log.info('point restored', { point: point.id, takenAt: point.takenAt });
  if (define) {
    const booted = await restoredXml(o, generation, name, dir, targets, 'raw', log);
    try {
      await defineDomain(o.virsh, booted.xml.toString());
    } catch (e) {
      for (const d of disks) await rm(d.path, { force: true });
      throw e;
    }
    result.uuid = booted.xml.uuid;
    result.defined = true;
    result.moved = booted.report.moved;
  }
  result.seconds = (Date.now() - started) / 1000;
  return result;
}
