export { isRbdLocation, parseRbdLocation, formatRbdLocation, type RbdLocation } from './location.ts';
export { openRbdStore, RbdStore, type RbdStoreOptions, cephSecretUsage, qemuRbdFilename } from './rbd-store.ts';
