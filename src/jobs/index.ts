/**
 * The job runner (docs/design.md §3 jobs/): what the CLI and the daemon import. docs/jobs.md describes it.
 */

export type { StoreCapacity, TargetView } from '../protocol/index.ts';
export { type CacheDrive, type Discovery, discoverCacheDrives } from './cache/drives.ts';
export { type DriveMount, useDrive } from './cache/mounts.ts';
export { planStaging, type StagingMode, type StagingPlan } from './cache/plan.ts';
export { type TargetStaging, targetStaging } from './cache/target.ts';
export { backoffMs, type CopyServerOptions, copyServer, retryable, type ServerOutcome } from './copy.ts';
export { JobError, jobNotFound } from './errors.ts';
export { dedupKeys, EventLog } from './events.ts';
export {
  type ForgetRequest,
  type ForgetResult,
  type ForgottenPair,
  forget,
  type NextCopy,
  type ServerForget,
} from './forget.ts';
export { type LaneStatus, laneStatus } from './lane-status.ts';
export { type MaintenanceReport, runMaintenance, SWEEP_EVERY_MS } from './maintenance.ts';
export { type AlertChannel, EmailChannel, formatAlert, Notifier, WebhookChannel } from './notify.ts';
export { jobsCopying } from './pairs.ts';
export {
  claimLogRetention,
  pruneHistory,
  pruneLogs,
  RETENTION_EVERY_MS,
} from './retention.ts';
export { checkRpo, type RpoCheck } from './rpo.ts';
export {
  type JobRunResult,
  type JobUpdate,
  type RunJobOptions,
  runJob,
  type ServerReport,
  type StagingReport,
  startJobRun,
} from './runner.ts';
export { missedFire } from './schedule.ts';
export { planSessionFactory, senderFactory } from './sender.ts';
export { jobSelections, orderBySize, type Selection, selectFrom, selectJobServers } from './servers.ts';
export { type CheckpointSweep, sweepCheckpoints } from './stale-checkpoints.ts';
export { nextRuns, type RpoState, rpoState, type StatusRow, statusRows } from './status.ts';
export { DEFAULT_COPIES, EarlyConnection, type ResolvedTarget, resolveTarget } from './targets.ts';
