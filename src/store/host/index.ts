/** Host artefacts in a store: rescue media and backup archives of hypervisor hosts (types.ts). */
export { type HostHold, HostStore, type HostStoreOptions, hostNotFound } from './host-store.ts';
export { HostLayout, parseHostFileName } from './layout.ts';
export { hostFactsSchema } from './records.ts';
export * from './types.ts';
export { checkHostFile, fileDigest, type HostVerifyOptions, verifyHosts } from './verify.ts';
export type { HostFileWriter } from './writer.ts';
