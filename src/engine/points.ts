/**
 * Points in time. A generation in the store records the point in time it was copied from; for
 * Haven that is the name of the libvirt checkpoint created at that instant, so the target itself
 * says which checkpoint the next incremental run starts from (docs/design.md §6). Names are unique per
 * run (time plus randomness): reusing a name is what breaks other tools' chains ("Bitmap
 * already exists", virtnbdbackup #9).
 */
import { randomBytes } from 'node:crypto';

export const CHECKPOINT_PREFIX = 'haven-';

export function newCheckpointName(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${CHECKPOINT_PREFIX}${stamp}-${randomBytes(3).toString('hex')}`;
}

/** True for checkpoints Haven made (and may delete). */
export function isHavenCheckpoint(name: string): boolean {
  return name.startsWith(CHECKPOINT_PREFIX);
}

/**
 * The checkpoint a generation's point in time names, if it is one of ours. Other points in time
 * (a copy made by another tool, an older format) give undefined: the next run resyncs.
 */
export function checkpointOf(pointInTime: string | undefined): string | undefined {
  return pointInTime && isHavenCheckpoint(pointInTime) ? pointInTime : undefined;
}
