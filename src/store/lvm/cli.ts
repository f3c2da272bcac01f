/**
 * A thin wrapper around the `lvm` commands the LVM store runs (lvm(8)): reports as JSON
 * (`--reportformat json`, sizes in bytes), and creating, renaming, tagging and removing LVs. Every
 * change is committed to the volume group's metadata before the command returns (lvm writes and
 * fsyncs the metadata areas), which is what makes the store's renames durable. Failures become
 * store errors with stable codes: a group without room is NO_SPACE (LVM's ENOSPC), a missing
 * group STORE_LVM_NO_VG, a name another LV took STORE_LVM_FOREIGN, anything else STORE_LVM_FAILED
 * with lvm's message.
 */
import { CommandError, exec } from '../../core/exec.ts';
import { storeError } from '../errors.ts';
import { type GroupSpec, type LvInfo, missingGroup, parseLvs, parseVgs, type VgInfo } from './report.ts';

const LV_FIELDS =
  'lv_name,vg_name,lv_size,lv_tags,lv_attr,pool_lv,data_percent,chunk_size,discards,metadata_percent,lv_when_full';
const REPORT = ['--reportformat', 'json', '--units', 'b', '--nosuffix'];
/** lvm warns on stderr about inherited descriptors; Node's children inherit none that matter. */
const ENV = { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' };

const NO_ROOM =
  /insufficient (free )?(space|extents)|not enough free|free space in thin pool|would exceed|Cannot create new thin volume/i;
const NO_GROUP = /Volume group "([^"]+)" not found/;
/** lvcreate and lvrename refuse a name the group holds already (lvm2 2.03's message). */
const NAME_TAKEN = /Logical volume "([^"]+)" already exists in volume group "([^"]+)"/i;

export class LvmCli {
  constructor(private readonly command = 'lvm') {}

  async lvs(vgs: readonly string[]): Promise<LvInfo[]> {
    const { stdout } = await this.run(['lvs', ...REPORT, '-o', LV_FIELDS, ...vgs]);
    return parseLvs(stdout);
  }

  async vgs(vgs: readonly string[]): Promise<VgInfo[]> {
    const { stdout } = await this.run([
      'vgs',
      ...REPORT,
      '-o',
      'vg_name,vg_size,vg_free,vg_extent_size',
      ...vgs,
    ]);
    return parseVgs(stdout);
  }

  /** A new active LV of at least `size` bytes: thick in the group, or thin in its pool. */
  async create(group: GroupSpec, name: string, size: number, tags: readonly string[]): Promise<void> {
    const bytes = `${sectors(size)}b`;
    // -W n: no signature wiping; a thick LV is not zeroed by lvm either (-Z n): the store zeroes
    // it whole itself (images.ts), and a thin one reads as zeroes already.
    const where = group.pool
      ? ['-V', bytes, '--thin', `${group.vg}/${group.pool}`]
      : ['-Z', 'n', '-L', bytes, group.vg];
    await this.run(['lvcreate', '-y', '-q', '-W', 'n', '-n', name, ...tagArgs(tags), ...where], group);
  }

  /** A thin snapshot of `origin`, active (not skipped at activation), tagged. */
  async snapshot(vg: string, origin: string, name: string, tags: readonly string[]): Promise<void> {
    await this.run(['lvcreate', '-y', '-q', '-s', '-kn', '-n', name, ...tagArgs(tags), `${vg}/${origin}`], {
      vg,
    });
  }

  async rename(vg: string, from: string, to: string): Promise<void> {
    await this.run(['lvrename', '-q', vg, from, to], { vg });
  }

  async remove(vg: string, name: string): Promise<void> {
    await this.run(['lvremove', '-y', '-q', '-f', `${vg}/${name}`], { vg });
  }

  /** Grows an LV to at least `size` bytes. */
  async extend(vg: string, name: string, size: number): Promise<void> {
    await this.run(['lvextend', '-q', '-L', `${sectors(size)}b`, `${vg}/${name}`], { vg });
  }

  /** Replaces tags in one metadata commit. */
  async retag(vg: string, name: string, remove: readonly string[], add: readonly string[]): Promise<void> {
    await this.run(
      ['lvchange', '-q', ...remove.flatMap((t) => ['--deltag', t]), ...tagArgs(add), `${vg}/${name}`],
      { vg },
    );
  }

  async activate(vg: string, name: string): Promise<void> {
    await this.run(['lvchange', '-q', '-ay', '-K', `${vg}/${name}`], { vg });
  }

  private async run(args: string[], group?: GroupSpec): Promise<{ stdout: string }> {
    try {
      return await exec(this.command, args, { env: ENV });
    } catch (e) {
      throw classify(e, args, group);
    }
  }
}

/** LVM takes sizes in whole 512-byte sectors (it rounds up to extents itself); at least one. */
export function sectors(size: number): number {
  return Math.max(1, Math.ceil(size / 512)) * 512;
}

function tagArgs(tags: readonly string[]): string[] {
  return tags.flatMap((t) => ['--addtag', t]);
}

/** An lvm failure as the store error it means. */
export function classify(e: unknown, args: readonly string[], group?: GroupSpec): unknown {
  if (!(e instanceof CommandError)) return e;
  const stderr = e.result.stderr;
  const missing = NO_GROUP.exec(stderr)?.[1];
  if (missing) return missingGroup({ vg: missing });
  const taken = NAME_TAKEN.exec(stderr);
  if (taken) {
    // The store had just found no LV of that name with its tag (images.ts): someone else's LV
    // took the name meanwhile, and lvm changed nothing.
    const [, lv, vg] = taken;
    return storeError(
      'STORE_LVM_FOREIGN',
      'conflict',
      `${vg}/${lv} exists and is not this store's: Haven leaves it alone`,
      {
        hint: `Rename or remove ${vg}/${lv} yourself if it is not needed (\`lvs -o lv_name,lv_tags ${vg}\`), or give the server another name; nothing was changed.`,
        details: { vg, lv, command: ['lvm', ...args].join(' ') },
        cause: e,
      },
    );
  }
  if (NO_ROOM.test(stderr)) {
    const where = group
      ? group.pool
        ? `thin pool ${group.vg}/${group.pool}`
        : `volume group ${group.vg}`
      : 'the volume group';
    return storeError('NO_SPACE', 'resource', `no room in ${where}: ${stderr.trim().split('\n')[0]}`, {
      hint: 'Add a physical volume to the group (vgextend), or remove LVs Haven does not need, then run the replication again; stored generations are intact.',
      details: { command: ['lvm', ...args].join(' '), stderr: stderr.slice(0, 2000) },
      cause: e,
    });
  }
  return storeError(
    'STORE_LVM_FAILED',
    'io',
    `lvm ${args.join(' ')} failed: ${stderr.trim() || `exit ${e.result.code}`}`,
    {
      hint: 'Read the lvm message, fix the volume group (`vgs`, `lvs`, `pvs`), then run again; stored generations are intact.',
      details: { command: ['lvm', ...args].join(' '), exitCode: e.result.code },
      cause: e,
    },
  );
}
