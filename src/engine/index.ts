/** The replication engine (docs/design.md §3): one server to one target per run. */
export {
  type CheckpointCleanup,
  deleteCheckpoints,
  endLeftBackup,
  havenCheckpoints,
  pruneUnneededCheckpoints,
  serverPresence,
} from './checkpoint-cleanup.ts';
export { EngineError } from './errors.ts';
export {
  type DomainState,
  inventory,
  listServerNames,
  type ServerSummary,
  serverState,
  Virsh,
} from './inventory.ts';
export { checkpointOf, isHavenCheckpoint, newCheckpointName } from './points.ts';
export type { ProgressSnapshot } from './progress.ts';
export { planProtect } from './protect-plan.ts';
export {
  DEFAULT_TUNING,
  type DiskReport,
  type PlanOptions,
  type ProtectOptions,
  type ProtectPlan,
  type ProtectResult,
  type ProtectTuning,
  protectedDisks,
  protectServer,
  type StageHook,
} from './replicate.ts';
export {
  canReconnect,
  canRetryLater,
  DEFAULT_RECONNECTS,
  interruption,
  isFinal,
} from './retry.ts';
export type { ProtectedDisk, Source, SourceKind } from './source.ts';
export {
  estimateStaging,
  STAGE_BITMAP,
  type StagedSource,
  type StageOptions,
  stageSource,
  stagingOverhead,
} from './stage.ts';
