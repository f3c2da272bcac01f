/**
 * The daemon (DESIGN §3): scheduler, HTTP API, live progress, metrics, alerts, web UI, and the
 * recorded drill runs it shares with `haven drill`. What cli/ may use of it.
 */
export { type Daemon, type DaemonOptions, startDaemon } from './daemon.ts';
export { type RecordedDrill, type RecordedDrillOptions, runRecordedDrill } from './drill-runs.ts';
