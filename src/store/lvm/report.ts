/**
 * The pure part of the LVM store (docs/store-lvm.md): the store's group list as written
 * (`vg_dr0,vg_dr1`, `vg_dr/pool0`), `lvs`/`vgs --reportformat json` output, the tags that mark
 * Haven's LVs and their exact sizes, where a new LV goes, and which image names LVM can hold.
 */
import { storeError } from '../errors.ts';

/** One entry of a store's group list: a volume group, and the thin pool in it if any. */
export interface GroupSpec {
  vg: string;
  /** Thin LVs in this pool (`vg/pool`); thick LVs when absent. */
  pool?: string;
}

export interface LvInfo {
  name: string;
  vg: string;
  /** Bytes (rounded up to the group's extent size). */
  size: number;
  tags: string[];
  /** `lv_attr`, e.g. `-wi-a-----`; the first letter `t` is a thin pool, `V` a thin volume. */
  attr: string;
  /** The thin pool of a thin volume; empty otherwise. */
  pool: string;
  /** Percent of a thin pool's (or thin volume's) data space in use; null where LVM says none. */
  dataPercent: number | null;
  /** A thin pool's block size in bytes (0 for other LVs). */
  chunkSize: number;
  /** A thin pool's discards mode (`passdown`, `nopassdown`, `ignore`); empty for other LVs. */
  discards: string;
  /** Percent of a thin pool's metadata space in use; null for other LVs. */
  metadataPercent: number | null;
  /** What a full thin pool does with writes (`queue`, `error`; lvchange --errorwhenfull); empty for other LVs. */
  whenFull: string;
}

export interface VgInfo {
  name: string;
  size: number;
  free: number;
  extentSize: number;
}

/** Where a new LV can go and how much room it has there. */
export interface Place {
  group: GroupSpec;
  free: number;
}

/** What lvm accepts as a VG or LV name (lvm(8) "VALID NAMES"). */
const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/;
/** Name parts LVM keeps for its internal volumes (lvm(8)); an LV holding one is refused. */
const RESERVED_PARTS = [
  '_cdata',
  '_cmeta',
  '_corig',
  '_cpool',
  '_cvol',
  '_wcorig',
  '_iorig',
  '_mimage',
  '_mlog',
  '_pmspare',
  '_rimage',
  '_rmeta',
  '_tdata',
  '_tmeta',
  '_vdata',
  '_vorigin',
];
/** LVM's longest LV name (NAME_LEN − 1); the dm name also holds the group, checked by lvm itself. */
const MAX_LV_NAME = 127;

export const STORE_TAG_PREFIX = 'haven_store=';
export const SIZE_TAG_PREFIX = 'haven_size=';

/** The tag every LV of store `id` carries. */
export function storeTag(id: string): string {
  return `${STORE_TAG_PREFIX}${id}`;
}

export function sizeTag(size: number): string {
  return `${SIZE_TAG_PREFIX}${size}`;
}

/** The image's exact size from its tag; null when the LV has none (not an image Haven sized). */
export function taggedSize(lv: LvInfo): number | null {
  const t = lv.tags.find((x) => x.startsWith(SIZE_TAG_PREFIX));
  if (!t) return null;
  const n = Number(t.slice(SIZE_TAG_PREFIX.length));
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** `vg_dr0,vg_dr1` or `vg_dr/pool0` as the store's groups; refuses what LVM would not name. */
export function parseGroups(text: string): GroupSpec[] {
  const out: GroupSpec[] = [];
  for (const item of text.split(',').map((s) => s.trim())) {
    const [vg, pool, ...rest] = item.split('/');
    const bad = !vg || !LVM_NAME.test(vg) || rest.length > 0 || (pool !== undefined && !LVM_NAME.test(pool));
    if (bad) {
      throw storeError(
        'STORE_LVM_BAD_NAME',
        'usage',
        `invalid volume group ${JSON.stringify(item)} in ${JSON.stringify(text)}`,
        {
          hint: 'Write volume groups comma-separated, each VG or VG/THINPOOL, e.g. vg_dr0,vg_dr1 or vg_dr/pool0.',
        },
      );
    }
    if (out.some((g) => g.vg === vg)) {
      throw storeError(
        'STORE_LVM_BAD_NAME',
        'usage',
        `volume group ${vg} is named twice in ${JSON.stringify(text)}`,
        {
          hint: 'Name each volume group once.',
        },
      );
    }
    out.push(pool === undefined ? { vg } : { vg, pool });
  }
  return out.sort((a, b) => (a.vg < b.vg ? -1 : a.vg > b.vg ? 1 : 0));
}

export function formatGroups(groups: readonly GroupSpec[]): string {
  return groups.map((g) => (g.pool ? `${g.vg}/${g.pool}` : g.vg)).join(',');
}

/** Refuses an image name LVM cannot hold as an LV name, before anything is created. */
export function checkLvName(name: string): string {
  const reserved = RESERVED_PARTS.find((p) => name.includes(p));
  const bad =
    !LVM_NAME.test(name) ||
    name.length > MAX_LV_NAME ||
    reserved !== undefined ||
    name.startsWith('snapshot') ||
    name.startsWith('pvmove');
  if (bad) {
    throw storeError('STORE_LVM_BAD_NAME', 'usage', `${JSON.stringify(name)} cannot be an LV name`, {
      hint: `An LV name has at most ${MAX_LV_NAME} characters and holds none of ${RESERVED_PARTS.join(' ')} and does not start with snapshot or pvmove: use shorter server and disk names.`,
      details: { name, ...(reserved ? { reserved } : {}) },
    });
  }
  return name;
}

function rows(json: string, key: 'lv' | 'vg'): Record<string, unknown>[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw storeError(
      'STORE_LVM_FAILED',
      'io',
      `lvm printed a report that is not JSON: ${json.slice(0, 200)}`,
      {
        hint: 'Check that lvm2 is at least 2.02.158 (--reportformat json).',
        cause: e,
      },
    );
  }
  const report = (parsed as { report?: unknown }).report;
  if (!Array.isArray(report)) {
    throw storeError('STORE_LVM_FAILED', 'io', 'lvm printed a JSON report without "report"', {
      hint: 'Check that lvm2 is at least 2.02.158 (--reportformat json).',
    });
  }
  return report.flatMap((r) => {
    const list = (r as Record<string, unknown>)[key];
    return Array.isArray(list) ? (list as Record<string, unknown>[]) : [];
  });
}

function field(row: Record<string, unknown>, name: string): string {
  const v = row[name];
  return typeof v === 'string' ? v.trim() : '';
}

function bytes(row: Record<string, unknown>, name: string): number {
  const n = Number(field(row, name));
  if (!Number.isSafeInteger(n) || n < 0) {
    throw storeError('STORE_LVM_FAILED', 'io', `lvm reported ${name} ${JSON.stringify(row[name])}`, {
      hint: 'Run lvs/vgs with --units b --nosuffix yourself to see what lvm reports.',
    });
  }
  return n;
}

/** A percent field; null where LVM reports none (an LV of a kind without it). */
function percent(row: Record<string, unknown>, name: string): number | null {
  const v = field(row, name);
  return v === '' ? null : Number(v);
}

/** `lvs --reportformat json --units b --nosuffix -o` cli.ts LV_FIELDS. */
export function parseLvs(json: string): LvInfo[] {
  return rows(json, 'lv').map((r) => {
    return {
      name: field(r, 'lv_name'),
      vg: field(r, 'vg_name'),
      size: bytes(r, 'lv_size'),
      tags: field(r, 'lv_tags')
        .split(',')
        .filter((t) => t !== ''),
      attr: field(r, 'lv_attr'),
      pool: field(r, 'pool_lv'),
      dataPercent: percent(r, 'data_percent'),
      chunkSize: field(r, 'chunk_size') === '' ? 0 : bytes(r, 'chunk_size'),
      discards: field(r, 'discards'),
      metadataPercent: percent(r, 'metadata_percent'),
      whenFull: field(r, 'lv_when_full'),
    };
  });
}

/** `vgs --reportformat json --units b --nosuffix -o vg_name,vg_size,vg_free,vg_extent_size`. */
export function parseVgs(json: string): VgInfo[] {
  return rows(json, 'vg').map((r) => ({
    name: field(r, 'vg_name'),
    size: bytes(r, 'vg_size'),
    free: bytes(r, 'vg_free'),
    extentSize: bytes(r, 'vg_extent_size'),
  }));
}

/**
 * The block size at which discarding a thin volume's range unmaps it (reads as zeroes after):
 * its pool's, unless the pool ignores discards; 0 where discards cannot zero (thick LVs).
 */
export function discardBlock(lv: LvInfo, lvs: readonly LvInfo[]): number {
  if (!lv.pool) return 0;
  const pool = lvs.find((l) => l.vg === lv.vg && l.name === lv.pool);
  return pool && pool.discards !== 'ignore' && pool.chunkSize > 0 ? pool.chunkSize : 0;
}

/**
 * Whether a thin pool can map no more blocks: its data or its metadata space is used up. dm-thin
 * then fails writes that need a new block (after holding them for `no_space_timeout`, 60 s, unless
 * the pool errors when full): ENOSPC past the page cache, EIO at fsync through it.
 */
export function poolIsFull(pool: LvInfo): boolean {
  return (pool.dataPercent ?? 0) >= 100 || (pool.metadataPercent ?? 0) >= 100;
}

/** Free data space of a thin pool (its size less what its data percent says is used). */
export function poolFree(pool: LvInfo): number {
  return Math.floor((pool.size * (100 - (pool.dataPercent ?? 0))) / 100);
}

/**
 * Where each group can take a new LV: a thick group's free extents, a thin group's pool's free
 * data space. Throws STORE_LVM_NO_VG for a group or pool that does not exist.
 */
export function places(
  groups: readonly GroupSpec[],
  vgs: readonly VgInfo[],
  lvs: readonly LvInfo[],
): Place[] {
  return groups.map((group) => {
    const vg = vgs.find((v) => v.name === group.vg);
    if (!vg) throw missingGroup(group);
    if (!group.pool) return { group, free: vg.free };
    const pool = lvs.find((l) => l.vg === group.vg && l.name === group.pool && l.attr.startsWith('t'));
    if (!pool) throw missingGroup(group);
    return { group, free: poolFree(pool) };
  });
}

export function missingGroup(group: GroupSpec): Error {
  const what = group.pool ? `thin pool ${group.vg}/${group.pool}` : `volume group ${group.vg}`;
  return storeError('STORE_LVM_NO_VG', 'not-found', `the ${what} does not exist on this host`, {
    hint: group.pool
      ? `Create it (lvcreate --type thin-pool -L SIZE -n ${group.pool} ${group.vg}), or check the store's groups with \`vgs\` and \`lvs\`.`
      : `Create it (vgcreate ${group.vg} DEVICE), or check the store's groups with \`vgs\`.`,
    details: { vg: group.vg, ...(group.pool ? { pool: group.pool } : {}) },
  });
}

/**
 * The group a new LV of `size` bytes goes to (seed 000): the most free space first, equal free
 * space alphabetically; null when none has room. With `thinOvercommit`, a thin pool takes a thin
 * volume of any size while it has free data space (thin volumes map blocks as they are written).
 */
export function chooseGroup(
  candidates: readonly Place[],
  size: number,
  thinOvercommit = false,
): GroupSpec | null {
  const fit = candidates.filter((p) => p.free >= (thinOvercommit && p.group.pool ? 1 : size));
  fit.sort((a, b) => b.free - a.free || (a.group.vg < b.group.vg ? -1 : a.group.vg > b.group.vg ? 1 : 0));
  return fit[0]?.group ?? null;
}
