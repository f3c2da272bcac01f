/**
 * Whether a rotation fits in an LVM store (common/images.ts `checkRoom`), checked before anything
 * is renamed, as fs/space.ts does for files. New LVs: a copied slot needs one per disk at the
 * disk's size (a thick group's extents); a disk the slot's source lacks needs one too. Data: on
 * thin pools every byte the applied deltas carry may be newly mapped (a recycled thin volume, a
 * snapshot's copy-on-write). The new digests go to the metadata directory's filesystem.
 */
import { statfs } from 'node:fs/promises';
import { io } from '../common/files.ts';
import type { RotationRoom } from '../common/images.ts';
import type { MetadataLayout } from '../common/metadata-layout.ts';
import { sumsLength } from '../common/sums.ts';
import { storeError } from '../errors.ts';
import { chooseGroup, formatGroups, type Place } from './report.ts';

/** Headroom beyond what the rotation itself writes (journal, records, manifest). */
const SLACK_BYTES = 1 << 20;

export async function checkLvmRoom(
  layout: MetadataLayout,
  room: RotationRoom,
  where: Place[],
): Promise<void> {
  const free = where.map((p) => ({ ...p }));
  const thin = free.some((p) => p.group.pool);
  const newLvs = room.disks
    .filter((d) => room.slot === 'copy' || !d.inSource)
    .map((d) => (thin ? d.dataBytes : d.size))
    .sort((a, b) => b - a);
  // Thin pools map what the deltas write into recycled or snapshotted volumes too.
  const mapped = thin
    ? room.disks.filter((d) => room.slot !== 'copy' && d.inSource).reduce((n, d) => n + d.dataBytes, 0)
    : 0;
  for (const need of [...newLvs, ...(mapped ? [mapped] : [])]) {
    const group = chooseGroup(free, need);
    const place = free.find((p) => p.group === group);
    if (!place) {
      throw storeError(
        'NO_SPACE',
        'resource',
        `not enough room in ${formatGroups(where.map((p) => p.group))} to commit ${room.server}`,
        {
          hint: 'Add a physical volume to a group (vgextend) or extend the thin pool (lvextend), then run the replication again: the durable delta is committed first. Stored generations are intact.',
          details: { needBytes: need, freeBytes: Object.fromEntries(where.map((p) => [p.group.vg, p.free])) },
        },
      );
    }
    place.free -= need;
  }
  const sums = room.disks.reduce((n, d) => n + sumsLength(d.size), SLACK_BYTES);
  const fs = await io(layout.root, () => statfs(layout.root));
  if (fs.bavail * fs.bsize < sums) {
    throw storeError(
      'NO_SPACE',
      'resource',
      `not enough space in ${layout.root} for the digests of ${room.server}`,
      {
        hint: "Free space on the filesystem of the store's metadata directory, then run the replication again. Stored generations are intact.",
        details: { needBytes: sums, freeBytes: fs.bavail * fs.bsize },
      },
    );
  }
}
