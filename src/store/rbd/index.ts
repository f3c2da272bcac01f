export { formatRbdLocation, isRbdLocation, parseRbdLocation, type RbdLocation } from './location.ts';
export {
  cephSecretUsage,
  openRbdStore,
  qemuRbdFilename,
  RbdStore,
  type RbdStoreOptions,
} from './rbd-store.ts';
