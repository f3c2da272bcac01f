/**
 * A disk's virtual size read from the image itself, without asking the QEMU that runs it.
 *
 * Why not `virsh domblkinfo`: for a running domain libvirt answers it with QMP
 * `query-named-block-nodes`, and QEMU 7.2 aborts (qcow2_get_specific_info: "Assertion `false'
 * failed") when that query meets a qcow2 node that is still being opened, as the scratch images
 * of a starting pull-mode backup are. A listing on one host (the dashboard, a job picking its
 * servers) while another run's `backup-begin` is in flight killed the guest (reproduced in
 * test/integration/virt-servers.test.ts). Reading the image is also free of libvirt's domain job
 * lock, so a listing never waits behind a long job.
 */
import { open, readFile, stat } from 'node:fs/promises';

/** qcow2 header (QEMU docs/interop/qcow2.txt): magic "QFI\xfb" at 0, version at 4, size at 24. */
const QCOW2_MAGIC = 0x514649fb;
export const QCOW2_HEADER_PREFIX = 32;

/** The virtual size in a qcow2 header's first 32 bytes; undefined when it is not qcow2 v2/v3. */
export function qcow2VirtualSize(header: Buffer): number | undefined {
  if (header.length < QCOW2_HEADER_PREFIX || header.readUInt32BE(0) !== QCOW2_MAGIC) return undefined;
  const version = header.readUInt32BE(4);
  if (version !== 2 && version !== 3) return undefined;
  const size = header.readBigUInt64BE(24);
  return size <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(size) : undefined;
}

/** Linux dev_t → "major:minor" (glibc's gnu_dev_major/gnu_dev_minor layout). */
export function devNumbers(rdev: number): string {
  const r = BigInt(rdev);
  const major = ((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn);
  const minor = (r & 0xffn) | ((r >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

async function blockDeviceSize(rdev: number): Promise<number> {
  // /sys/dev/block/<maj:min>/size counts 512-byte sectors whatever the logical block size.
  const sectors = await readFile(`/sys/dev/block/${devNumbers(rdev)}/size`, 'utf8');
  return Number(sectors.trim()) * 512;
}

/**
 * The size the guest sees for a raw or qcow2 image file or block device; undefined for other
 * formats (the caller asks qemu-img). Throws when the path cannot be read.
 */
export async function localVirtualSize(
  path: string,
  format: string | undefined,
): Promise<number | undefined> {
  if (format === 'raw') {
    const st = await stat(path);
    if (st.isBlockDevice()) return blockDeviceSize(st.rdev);
    return st.isFile() ? st.size : undefined;
  }
  if (format !== 'qcow2') return undefined;
  const fh = await open(path, 'r');
  try {
    const header = Buffer.alloc(QCOW2_HEADER_PREFIX);
    const { bytesRead } = await fh.read(header, 0, header.length, 0);
    return qcow2VirtualSize(header.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
