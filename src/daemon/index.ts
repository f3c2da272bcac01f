/**
 * The daemon (docs/design.md §3): scheduler, HTTP API, live progress, metrics, alerts, web UI, the
 * recorded drill runs it shares with `haven drill`, and `haven doctor`'s look at its listen
 * address. What cli/ may use of it.
 */
export { type Daemon, type DaemonOptions, startDaemon } from './daemon.ts';
export { type RecordedDrill, type RecordedDrillOptions, runRecordedDrill } from './drill-runs.ts';
export { daemonListenCheck, type ListenCheck } from './listen-check.ts';
