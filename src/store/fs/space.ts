/**
 * Whether a rotation fits on the store's filesystem (common/images.ts `checkRoom`), checked before
 * anything is renamed so the store is never left mid-rotation by a predictable NO_SPACE. Per disk
 * of the new generation, applying can only allocate blocks where the slot image has holes, and at
 * most as many as the applied deltas carry data for it; a copied slot first needs the source's
 * allocated blocks. A cloned slot shares the source's blocks, but every block the delta writes is
 * copied on write. The new digests take space on the same filesystem.
 */
import { stat, statfs } from 'node:fs/promises';
import { io } from '../common/files.ts';
import type { RotationRoom } from '../common/images.ts';
import { sumsLength } from '../common/sums.ts';
import { storeError } from '../errors.ts';
import type { FsLayout } from './layout.ts';

/** Headroom beyond what the rotation itself writes (journal, records, manifest). */
const SLACK_BYTES = 1 << 20;

export async function checkRoom(layout: FsLayout, room: RotationRoom): Promise<void> {
  let need = SLACK_BYTES;
  for (const d of room.disks) {
    const source = d.inSource
      ? await stat(layout.image(room.server, d.name, room.fromSeq)).catch(() => null)
      : null;
    const allocated = source ? source.blocks * 512 : 0;
    if (room.slot === 'copy') need += allocated;
    const written =
      room.slot === 'clone' ? d.dataBytes : Math.min(d.dataBytes, Math.max(0, d.size - allocated));
    need += written + sumsLength(d.size);
  }
  const fs = await io(layout.root, () => statfs(layout.root));
  const free = fs.bavail * fs.bsize;
  if (free < need) {
    throw storeError('NO_SPACE', 'resource', `not enough space in ${layout.root} to commit ${room.server}`, {
      hint: 'Free space on the target filesystem, then run the replication again: the durable delta is committed first. Stored generations are intact.',
      details: { needBytes: need, freeBytes: free },
    });
  }
}
