/** Continuous protection (issue 15, docs/continuous.md): the protector, its lanes and their state. */
export { ChunkSet, DiskChunks } from './chunk-set.ts';
export { type ContinuousCode, ContinuousError } from './errors.ts';
export { adopt, decide, mintGenerationId, nextGeneration, type SyncDecision } from './ids.ts';
export { type LanePoint, type LaneRecord, type LaneState, type LaneTarget, refusalError } from './lane.ts';
export {
  type ContinuousStateStore,
  continuousDisks,
  type LaneStatus,
  MAX_TARGETS,
  Protector,
  type ProtectorOptions,
  type ProtectorStatus,
  type SavedProtection,
} from './protector.ts';
