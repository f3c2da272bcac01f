/**
 * `haven doctor --store DIR` at an LVM store's host (docs/store-lvm.md): one check per group —
 * it exists, it has room (a thick group's free extents, a thin pool's free data space), and a
 * thin pool named by the store is one — as verdicts in `haven doctor`'s shape (the same fields as
 * virt's HostCheck, which store/ does not import).
 */
import { HavenError } from '../../core/errors.ts';
import type { LvmCli } from './cli.ts';
import { type GroupSpec, type LvInfo, poolFree, type VgInfo } from './report.ts';

export interface StoreCheck {
  id: string;
  title: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
  required: boolean;
}

/** Below this share of free space (of the group, or of the thin pool) a group is a warning. */
const LOW_FREE = 0.1;

const MiB = 1024 * 1024;

function mib(n: number): string {
  return `${(n / MiB).toFixed(0)} MiB`;
}

/** The verdicts for `groups`, from what `vgs` and `lvs` reported (pure: tested without LVM). */
export function lvmChecks(
  groups: readonly GroupSpec[],
  vgs: readonly VgInfo[],
  lvs: readonly LvInfo[],
): StoreCheck[] {
  return groups.map((g): StoreCheck => {
    const name = g.pool ? `${g.vg}/${g.pool}` : g.vg;
    const base = { id: `lvm-${name}`, title: `LVM store group ${name}`, required: true };
    const vg = vgs.find((v) => v.name === g.vg);
    if (!vg)
      return {
        ...base,
        status: 'fail',
        detail: 'the volume group does not exist',
        fix: `vgcreate ${g.vg} DEVICE`,
      };
    if (!g.pool) {
      const low = vg.free < vg.size * LOW_FREE;
      return {
        ...base,
        status: low ? 'warn' : 'ok',
        detail: `${mib(vg.free)} free of ${mib(vg.size)}`,
        ...(low ? { fix: `vgextend ${g.vg} DEVICE (a new LV needs its disk's whole size)` } : {}),
      };
    }
    const pool = lvs.find((l) => l.vg === g.vg && l.name === g.pool);
    if (!pool || !pool.attr.startsWith('t')) {
      return {
        ...base,
        status: 'fail',
        detail: pool
          ? `${name} is not a thin pool (attributes ${pool.attr})`
          : 'the thin pool does not exist',
        fix: `lvcreate --type thin-pool -L SIZE -n ${g.pool} ${g.vg}`,
      };
    }
    const free = poolFree(pool);
    const low = free < pool.size * LOW_FREE;
    const metadataLow = (pool.metadataPercent ?? 0) >= (1 - LOW_FREE) * 100;
    // lv_when_full: `error` fails a write at once; `queue` (LVM's default) holds it for
    // dm_thin_pool's no_space_timeout first (thin-full.ts). Either way Haven reports NO_SPACE.
    const whenFull =
      pool.whenFull === 'error' ? 'fails writes at once' : 'holds writes up to 60 s, then fails them';
    const fixes = [
      ...(low ? [`lvextend -L +SIZE ${g.vg}/${g.pool}`] : []),
      ...(metadataLow ? [`lvextend --poolmetadatasize +SIZE ${g.vg}/${g.pool}`] : []),
    ];
    return {
      ...base,
      status: low || metadataLow ? 'warn' : 'ok',
      detail: `thin pool: ${mib(free)} free of ${mib(pool.size)} (data ${pool.dataPercent ?? 0}% used, metadata ${pool.metadataPercent ?? 0}%); the group has ${mib(vg.free)} more; when full it ${whenFull}`,
      ...(fixes.length ? { fix: fixes.join('; ') } : {}),
    };
  });
}

/** Asks LVM about every group (a missing one is a verdict, not an error). */
export async function checkLvmStore(lvm: LvmCli, groups: readonly GroupSpec[]): Promise<StoreCheck[]> {
  const vgs: VgInfo[] = [];
  const lvs: LvInfo[] = [];
  for (const g of groups) {
    try {
      vgs.push(...(await lvm.vgs([g.vg])));
      lvs.push(...(await lvm.lvs([g.vg])));
    } catch (e) {
      if (!(e instanceof HavenError && e.code === 'STORE_LVM_NO_VG')) throw e;
    }
  }
  return lvmChecks(groups, vgs, lvs);
}
