/**
 * `haven doctor --store DIR` at an rbd store's host (docs/store-rbd.md): the cluster answers as
 * the store's cephx user, the pool exists, the user may read and write it (a metadata object
 * written and removed in the store's namespace, the images listed), the pool has room, and QEMU
 * has its rbd driver (Debian's qemu-block-extra), without which nothing boots from the cluster.
 */
import { randomUUID } from 'node:crypto';
import { HavenError } from '../../core/errors.ts';
import { exec } from '../../core/exec.ts';
import { silentLogger } from '../../core/log.ts';
import type { StoreCheck } from '../lvm/doctor.ts';
import { Broker } from './broker.ts';
import { formatRbdLocation, parseRbdLocation } from './location.ts';

/** Below this share of the quota left, the pool is a warning. */
const LOW_FREE = 0.1;
/** Doctor waits less than a run would: it reports, it does not retry. */
const DOCTOR_TIMEOUT_S = 10;

function failed(e: unknown): { detail: string; fix: string } {
  if (e instanceof HavenError)
    return { detail: `${e.code}: ${e.message}`, fix: e.hint ?? 'see docs/store-rbd.md' };
  return { detail: e instanceof Error ? e.message : String(e), fix: 'see docs/store-rbd.md' };
}

export async function checkRbdStore(spec: string): Promise<StoreCheck[]> {
  const location = parseRbdLocation(spec);
  const where = formatRbdLocation(location);
  const checks: StoreCheck[] = [];
  const broker = new Broker({
    location,
    opTimeoutS: DOCTOR_TIMEOUT_S,
    mountTimeoutS: DOCTOR_TIMEOUT_S,
    log: silentLogger,
  });
  try {
    try {
      const hello = await broker.hello();
      checks.push({
        id: 'rbd-cluster',
        title: `Ceph cluster and pool of ${where}`,
        status: 'ok',
        detail: `cluster ${String(hello.fsid)} answers client.${location.user}; pool ${location.pool} is there`,
        required: true,
      });
    } catch (e) {
      checks.push({
        id: 'rbd-cluster',
        title: `Ceph cluster and pool of ${where}`,
        status: 'fail',
        ...failed(e),
        required: true,
      });
      return [...checks, await qemuRbdCheck()];
    }
    try {
      await broker.call('probe_write', { token: randomUUID() });
      const images = (await broker.call('img_list')).names as string[];
      checks.push({
        id: 'rbd-caps',
        title: `client.${location.user} may use pool ${location.pool}`,
        status: 'ok',
        detail: `wrote and removed a metadata object, listed ${images.length} image(s)`,
        required: true,
      });
    } catch (e) {
      checks.push({
        id: 'rbd-caps',
        title: `client.${location.user} may use pool ${location.pool}`,
        status: 'fail',
        ...failed(e),
        required: true,
      });
    }
    checks.push(await roomCheck(broker, location.pool));
  } finally {
    await broker.close();
  }
  return [...checks, await qemuRbdCheck()];
}

async function roomCheck(broker: Broker, pool: string): Promise<StoreCheck> {
  const base = { id: 'rbd-room', title: `room in pool ${pool}`, required: true };
  try {
    const st = await broker.call('pool_status');
    const quota = Number(st.quotaBytes ?? 0);
    const used = Number(st.usedBytes ?? 0);
    const fix = `ceph osd pool set-quota ${pool} max_bytes BYTES (or free space in the cluster)`;
    if (st.full === true)
      return {
        ...base,
        status: 'fail',
        detail: `the pool is full (quota ${quota} bytes, ${used} used)`,
        fix,
      };
    if (quota > 0 && quota - used < quota * LOW_FREE)
      return { ...base, status: 'warn', detail: `${quota - used} of ${quota} bytes of quota left`, fix };
    return {
      ...base,
      status: 'ok',
      detail: quota > 0 ? `${quota - used} of ${quota} bytes of quota left` : `${used} bytes used, no quota`,
    };
  } catch (e) {
    return { ...base, status: 'fail', ...failed(e) };
  }
}

/** QEMU lists its block drivers, modules included: `rbd` is there when qemu-block-extra is. */
async function qemuRbdCheck(): Promise<StoreCheck> {
  const base = { id: 'rbd-qemu', title: "QEMU's rbd driver", required: true };
  const fix = 'apt-get install qemu-block-extra';
  try {
    const help = (await exec('qemu-img', ['--help'])).stdout;
    const formats = /Supported formats:(.*)/.exec(help)?.[1]?.trim().split(/\s+/) ?? [];
    return formats.includes('rbd')
      ? { ...base, status: 'ok', detail: 'qemu-img lists the rbd driver' }
      : { ...base, status: 'fail', detail: 'qemu-img does not list the rbd driver', fix };
  } catch (e) {
    return { ...base, status: 'fail', ...failed(e), fix };
  }
}
