/**
 * The configuration as the rest of Haven sees it: checked, with defaults applied, sizes in bytes,
 * rates in bytes per second and durations in milliseconds. docs/configuration.md describes
 * every key; the YAML names are snake_case, these are their camelCase twins.
 *
 * The name-keyed records (targets, jobs, drills, overrides) have no prototype, so a name such as
 * "constructor" from a command line finds nothing instead of Object's own property.
 */
import type { BootMarker, Severity } from './config-schema.ts';
import type { HostEndpoint, TargetEndpoint } from './config-values.ts';
import type { DefinitionRules } from './definition-context.ts';
import type { DrillNetworks, NetworksConfig } from './network-map.ts';

export type { BootMarker, Severity } from './config-schema.ts';
export type { HostEndpoint, TargetEndpoint } from './config-values.ts';

export interface TargetConfig {
  name: string;
  /** The url as written in the file. */
  url: string;
  endpoint: TargetEndpoint;
  /** Generations kept: `_1` (newest) to `_<copies>`. */
  copies: number;
  /** Bytes per second; 0 = unlimited. */
  bandwidth: number;
  /** zstd level; 0 = off. Default 3 for ssh and tls targets, 0 for local ones. */
  compress: number;
  /** Only for ssh:// targets. */
  ssh: { options: string[]; command: string } | undefined;
  /**
   * Where the target stages deltas (`haven receive --staging`): 'auto' = its largest cache drive
   * (docs/design.md §4.6), a directory, or undefined = inside the store. Not for tls:// targets, whose
   * listener is started with its own flags.
   */
  staging: string | undefined;
  /**
   * False: `haven receive --no-reflink`, generations stay separate images even on a filesystem
   * that could share their blocks. Not for tls:// targets (the listener's own flag).
   */
  reflink: boolean;
  /**
   * The most the target's store may hold, all servers together (`haven receive --quota`), and
   * per server (`--server-quota`), in bytes. Not for tls:// targets (the listener's own flags).
   */
  quota: number | undefined;
  serverQuotas: Record<string, number>;
  /** Only (and always) for tls:// targets. */
  tls:
    | { ca: string; cert: string | undefined; key: string | undefined; tokenFile: string | undefined }
    | undefined;
}

export type Consistency = 'live' | 'shutdown';

export interface JobConfig {
  name: string;
  /** Server names and glob patterns (config-patterns.ts), in the order written. */
  servers: string[];
  /** Names of targets (keys of HavenConfig.targets), at least one. */
  targets: string[];
  /** Five-field cron expression; undefined = run only on demand. */
  schedule: string | undefined;
  /**
   * `continuous`: `haven serve` protects the job's servers continuously (docs/continuous.md);
   * `schedule` then says when a generation is cut from the journal (none: the journal only).
   */
  mode: 'periodic' | 'continuous';
  /** Continuous: a point at most this often (ms). */
  intervalMs: number;
  /** Continuous: how long the targets keep points (ms). */
  windowMs: number;
  consistency: Consistency;
  /** Alert when the newest good copy is older than this (ms); undefined = no objective. */
  rpoMs: number | undefined;
  /** Servers copied at once. */
  parallel: number;
  /** Further attempts for a server whose copy failed. */
  retries: number;
  retryBackoffMs: number;
  /** Overrides each target's `copies` for this job's servers. */
  copies: number | undefined;
  /** Stage images on a primary cache drive (docs/design.md §4.6). */
  cache: boolean;
  /**
   * Bytes one server's transfer may hold in memory at once (read-ahead, compression, frames in
   * flight): the bound that keeps memory independent of disk size.
   */
  buffer: number;
}

export interface DrillOverride {
  bootMarker: BootMarker | undefined;
  timeoutMs: number | undefined;
}

/** The VM a host drill recovers into. */
export interface HostVmConfig {
  memoryBytes: number;
  vcpus: number;
  /** libvirt domain type; undefined: kvm where /dev/kvm exists, else qemu (TCG). */
  virtType: 'kvm' | 'qemu' | undefined;
}

export interface DrillConfig {
  name: string;
  /** The store on the DR host where the drill runs. */
  store: string;
  /** Server names and patterns (none: a drill of hosts only). */
  servers: string[];
  /** Host names and patterns whose stored backups are recovered (docs/hosts.md). */
  hosts: string[];
  /** How long a host's rescue boot and `rear recover` may take before its recovered system boots. */
  recoveryTimeoutMs: number;
  hostVm: HostVmConfig;
  schedule: string | undefined;
  /** undefined only when every server has its own marker in `overrides`. */
  bootMarker: BootMarker | undefined;
  /** How long a server may take to show its boot marker. */
  timeoutMs: number;
  /** Per server name. */
  overrides: Record<string, DrillOverride>;
  /** What its copies' interfaces join: nothing (isolated), the site's mapping, or its own. */
  networks: DrillNetworks;
}

/** ReaR settings Haven writes into its own ReaR configuration on the host. */
export interface RearSettings {
  /** Include firmware files in the rescue system. */
  firmware: boolean;
  /** How long a ReaR prompt waits before it takes its default answer. */
  userInputTimeoutMs: number;
}

/** A hypervisor host whose rescue media and backup Haven keeps (config `hosts.<name>`). */
export interface HostConfig {
  name: string;
  /** `local`, or `ssh://[user@]host[:port]` as written. */
  url: string;
  endpoint: HostEndpoint;
  /** Extra ssh arguments (ssh:// hosts). */
  sshOptions: string[];
  /** The target (a name under `targets`) that stores its rescue media and backups. */
  target: string | undefined;
  schedule: string | undefined;
  /** Generations kept of each kind; undefined: the target's `copies`. */
  copies: number | undefined;
  /** Alert when the newest host backup is older than this (ms). */
  rpoMs: number | undefined;
  /** Paths kept out of the backup archive, beyond Haven's defaults. */
  exclude: string[];
  rear: RearSettings;
}

export interface EmailAlertConfig {
  to: string[];
  from: string;
  /** smtp:// or smtps:// URL (user name allowed; the password comes from passwordFile). */
  smtp: string;
  passwordFile: string | undefined;
  minSeverity: Severity;
}

export interface WebhookAlertConfig {
  url: string;
  tokenFile: string | undefined;
  minSeverity: Severity;
}

export interface AlertsConfig {
  email: EmailAlertConfig | undefined;
  webhook: WebhookAlertConfig | undefined;
}

export interface CacheConfig {
  /** File name at a cache drive's root that marks it as one (docs/design.md §4.6). */
  signature: string;
}

export interface DaemonConfig {
  listen: { host: string; port: number };
  /** Addresses of the TLS-terminating reverse proxy in front (empty: none declared). */
  tlsProxy: string[];
  /** Live progress streams (`GET /api/progress`) open at once: in all, and per client address. */
  progressStreams: { total: number; perClient: number };
}

/**
 * How long Haven keeps its own records on this host (null: keep everything). Applied by the
 * daemon every hour, after CLI runs that did work (at most hourly), and by `haven prune`.
 */
export interface RetentionConfig {
  logs: {
    /** Run logs not written to for this long are deleted (ms). */
    maxAgeMs: number | null;
    /** The log directory is kept under this many bytes, oldest files deleted first. */
    maxBytes: number | null;
    /** …and under this many files. */
    maxFiles: number | null;
  };
  /** Finished runs (with their per-server results) older than this (ms). */
  runsMs: number | null;
  /** Events older than this (ms). */
  eventsMs: number | null;
  /**
   * Checkpoints kept only for a (server, target) pair that no job copies any more and that got
   * no copy for this long are deleted (ms); its next copy there is a checksum resync.
   */
  unusedCheckpointsMs: number | null;
}

/** A problem found in the file, placed by key path and, where known, line and column. */
export interface ConfigProblem {
  /** Key path such as `jobs.nightly.schedule`; empty for the document itself. */
  path: string;
  message: string;
  line: number | undefined;
  column: number | undefined;
}

/** A store on this DR host that the daemon verifies on a schedule (`scrubs.<name>`). */
export interface ScrubConfig {
  name: string;
  store: string;
  schedule: string;
}

export interface IntegrityConfig {
  /**
   * How long a generation's whole-image check stays good: a commit re-reads the generation its new
   * slot starts from only when part of it was last checked longer ago (0: every commit).
   */
  recheckMs: number;
}

export interface HavenConfig {
  /** The file it came from; null when no file exists and everything came from defaults. */
  file: string | null;
  /** IANA time zone the schedules are read in; undefined = the host's local time. */
  timezone: string | undefined;
  targets: Record<string, TargetConfig>;
  jobs: Record<string, JobConfig>;
  drills: Record<string, DrillConfig>;
  hosts: Record<string, HostConfig>;
  scrubs: Record<string, ScrubConfig>;
  alerts: AlertsConfig;
  cache: CacheConfig;
  daemon: DaemonConfig;
  retention: RetentionConfig;
  /** The DR site's integrity policy (docs/configuration.md `integrity`). */
  integrity: IntegrityConfig;
  /**
   * What DR definitions may hold at this DR site: extra boot directories, and per server what
   * the definition rules let through beyond the rule (docs/recovery.md).
   */
  definitions: DefinitionRules;
  /** This DR site's failover network mapping (docs/recovery.md, "Networks at the DR site"). */
  networks: NetworksConfig;
  /** Valid but suspicious settings (`haven config check` prints them). */
  warnings: ConfigProblem[];
}
