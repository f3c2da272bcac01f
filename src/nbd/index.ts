/**
 * The NBD client component: what other components import. docs/nbd.md describes it.
 */
export {
  type BlockSize,
  type BlockStatusResult,
  NbdClient,
  type NbdConnectOptions,
  type NbdFlags,
} from './client.ts';
export {
  CONTEXT_BASE_ALLOCATION,
  CONTEXT_DIRTY_BITMAP_PREFIX,
  NBD_STATE_DIRTY,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from './constants.ts';
export { isNbdError, NbdError, NbdServerError } from './errors.ts';
export { type BlockStatusSource, DEFAULT_MAP_STEP, type MappedExtent, mapExtents } from './extents.ts';
export { NbdPool, type NbdPoolOptions } from './pool.ts';
export { type QemuNbdOptions, type QemuNbdServer, qemuNbdArgs, startQemuNbd } from './qemu-nbd.ts';
export type { BlockExtent } from './transmission.ts';

/** The meta context name of a QEMU dirty bitmap. */
export function dirtyBitmapContext(bitmap: string): string {
  return `qemu:dirty-bitmap:${bitmap}`;
}
