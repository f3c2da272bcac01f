/**
 * Recovery (docs/design.md §3, docs/recovery.md): activation at the DR site, drills, restore, failback,
 * and the guard that keeps the primary's stale copy from starting while the DR copy runs.
 */
export {
  type ActivateOptions,
  type ActivationReport,
  type ActivationResult,
  activateServers,
  activeDir,
  DEFAULT_ACTIVATION_PARALLEL,
} from './activate.ts';
export { type DeactivateResult, deactivateServer } from './deactivate.ts';
export {
  type DrillReport,
  type DrillResult,
  type DrillServerOptions,
  drillDedupKey,
  drillServer,
  type RecoveryEvent,
  type RunDrillDeps,
  runDrill,
} from './drill.ts';
export { type DrillPlan, type DrillPlanEntry, planDrill } from './drill-plan.ts';
export { RecoveryError, unknownServer } from './errors.ts';
export {
  type FailbackOptions,
  type FailbackPass,
  type FailbackResult,
  failback,
} from './failback/failback.ts';
export { parsePrimaryEndpoint } from './failback/link.ts';
export { serveFailback } from './failback/receiver.ts';
export type { SinkOptions } from './failback/sink.ts';
export {
  clearGuard,
  DEFAULT_HOOKS_DIR,
  type GuardInfo,
  guardAfterRefusal,
  hookScript,
  installHook,
  readGuard,
  reloadLibvirtd,
  setGuard,
  uninstallHook,
} from './guard.ts';
export { FileFollower, type MarkerResult, TextMatcher, waitForBootMarker } from './marker.ts';
export type { NetworkRequest, NicPlan } from './networks.ts';
export { type PrimaryStatus, primaryStatus, primaryUri } from './primary.ts';
export { type RestoreFormat, type RestoreOptions, type RestoreResult, restoreServer } from './restore.ts';
export { choosePoint, restorePoint } from './restore-point.ts';
