/**
 * Host recovery (issue 16, docs/hosts.md): hypervisor hosts rebuilt through
 * Relax-and-Recover. Haven owns its ReaR configuration on each host, stores rescue media and
 * backup archives as generations in a target's store, and drills their recovery in a VM.
 */
export {
  backupHost,
  type HostBackupOptions,
  type HostBackupReport,
  hostTarget,
  rescueReason,
} from './backup.ts';
export { drillHost, type HostDrillOptions, type HostDrillResult, hostDrillDedupKey } from './drill.ts';
export { HostError, unknownHost } from './errors.ts';
export { makeBackupMedium, mediumBytes } from './medium.ts';
export { type HostMediumOptions, type HostMediumReport, writeHostMedium } from './medium-write.ts';
export { Rear } from './rear.ts';
export { backupExcludes, REAR_CONFIG_PATH, rearConfig } from './rear-config.ts';
export {
  checkHostRpo,
  hostBackupAge,
  hostDedupKeys,
  runRecordedHostBackup,
  runRecordedHostDrill,
} from './record.ts';
export { type HostSetupReport, hostShell, requireReady, setupHost } from './setup.ts';
