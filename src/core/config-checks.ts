/**
 * Checks across keys of haven.yaml, run on the raw document beside the schema (not after it), so
 * that a file with a bad cron expression in one job still reports the unknown target of another:
 * an operator fixes a config in one round, not one error per round.
 *
 * Only the parts whose type is right are looked at here; wrong types are the schema's to report.
 */
import { isIP } from 'node:net';
import { isLiteralServer, selectServers } from './config-patterns.ts';
import type { HavenConfig } from './config-types.ts';
import { cronFor, parseTargetUrl, ValueProblem } from './config-values.ts';
import { clearTextExposure } from './exposure.ts';
import { isSafeName } from './names.ts';
import { formatDuration } from './units.ts';

export type PathSegment = string | number;

export interface PathProblem {
  path: PathSegment[];
  message: string;
  /** Point at the key itself rather than its value (names, unknown keys). */
  atKey?: boolean;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function entries(v: unknown): [string, unknown][] {
  return isObj(v) ? Object.entries(v) : [];
}

/** Every cross-key error in the raw document. */
export function crossCheck(raw: unknown): PathProblem[] {
  const problems: PathProblem[] = [];
  if (!isObj(raw)) return problems;

  for (const section of ['targets', 'jobs', 'drills', 'scrubs', 'hosts'] as const) {
    const what = section.slice(0, -1);
    for (const [name] of entries(raw[section])) {
      if (!isSafeName(name)) {
        problems.push({
          path: [section, name],
          atKey: true,
          message: `invalid ${what} name ${JSON.stringify(name)}: use letters, digits and + _ . - (not first: . or -), at most 100 characters`,
        });
      }
    }
  }

  const targetNames = entries(raw.targets).map(([n]) => n);
  for (const [name, t] of entries(raw.targets)) checkTarget(name, t, problems);

  // With a malformed targets section the schema reports that; "unknown target" would be noise.
  const targetsReadable = raw.targets === undefined || raw.targets === null || isObj(raw.targets);
  for (const [name, job] of entries(raw.jobs)) {
    if (!isObj(job) || !targetsReadable) continue;
    checkJobTargets(name, job, targetNames, problems);
  }

  for (const [name, host] of entries(raw.hosts)) {
    if (isObj(host) && targetsReadable) checkHost(name, host, targetNames, problems);
  }

  for (const [name, drill] of entries(raw.drills)) {
    if (!isObj(drill)) continue;
    const selects = (key: string) => drill[key] !== undefined && drill[key] !== null;
    if (!selects('servers') && !selects('hosts')) {
      problems.push({
        path: ['drills', name, 'servers'],
        message: 'required: expected servers: [...] or hosts: [...] (or both): what the drill boots',
      });
    }
    for (const [server] of entries(drill.overrides)) {
      if (!isSafeName(server)) {
        problems.push({
          path: ['drills', name, 'overrides', server],
          atKey: true,
          message: `invalid server name ${JSON.stringify(server)}: overrides are keyed by server name, not pattern`,
        });
      }
    }
    if (drill.boot_marker === undefined || drill.boot_marker === null) {
      // Without a drill-wide marker, every server must be named literally with its own marker.
      const overrides = isObj(drill.overrides) ? drill.overrides : {};
      const servers: unknown[] = [
        ...(Array.isArray(drill.servers) ? drill.servers : []),
        ...(Array.isArray(drill.hosts) ? drill.hosts : []),
      ];
      const covered =
        servers.length > 0 &&
        servers.every((s) => {
          if (typeof s !== 'string' || !isLiteralServer(s) || !Object.hasOwn(overrides, s)) return false;
          const o = overrides[s];
          return isObj(o) && isObj(o.boot_marker);
        });
      if (!covered) {
        problems.push({
          path: ['drills', name, 'boot_marker'],
          message:
            'required: expected a boot marker, { serial: "login:" } or { agent: true }, telling when a server (or a recovered host) counts as booted',
        });
      }
    }
  }
  // Allowances trust one server's definition: a pattern would trust servers nobody named.
  for (const [server] of entries(isObj(raw.definitions) ? raw.definitions.allow : undefined)) {
    if (!isSafeName(server)) {
      problems.push({
        path: ['definitions', 'allow', server],
        atKey: true,
        message: `invalid server name ${JSON.stringify(server)}: allowances are keyed by server name, not pattern`,
      });
    }
  }
  return problems;
}

function checkTarget(name: string, t: unknown, problems: PathProblem[]): void {
  if (!isObj(t) || typeof t.url !== 'string') return;
  let kind: string;
  try {
    kind = parseTargetUrl(t.url).kind;
  } catch (e) {
    if (e instanceof ValueProblem) return; // the schema reports the url itself
    throw e;
  }
  const hasSsh = t.ssh !== undefined && t.ssh !== null;
  const hasTls = t.tls !== undefined && t.tls !== null;
  if (hasSsh && kind !== 'ssh') {
    problems.push({
      path: ['targets', name, 'ssh'],
      atKey: true,
      message: `ssh settings apply only to ssh:// URLs, and this target's url is ${kind === 'tls' ? 'tls://' : 'a local path'}`,
    });
  }
  if (hasTls && kind !== 'tls') {
    problems.push({
      path: ['targets', name, 'tls'],
      atKey: true,
      message: `tls settings apply only to tls:// URLs, and this target's url is ${kind === 'ssh' ? 'ssh://' : 'a local path'}`,
    });
  }
  if (kind === 'tls' && !hasTls) {
    problems.push({
      path: ['targets', name, 'tls'],
      message:
        'required for a tls:// target: expected { ca: FILE, cert: FILE, key: FILE } and/or token_file: FILE',
    });
  }
  if (kind === 'tls' && isObj(t.tls)) {
    const { cert, key, token_file } = t.tls;
    if ((cert === undefined) !== (key === undefined)) {
      problems.push({
        path: ['targets', name, 'tls', cert === undefined ? 'cert' : 'key'],
        message: 'cert and key go together: give both (a client certificate) or neither',
      });
    } else if (cert === undefined && token_file === undefined) {
      problems.push({
        path: ['targets', name, 'tls'],
        message:
          'the receiver must be able to tell who is sending: give cert and key, or token_file, or both',
      });
    }
  }
}

function checkHost(name: string, host: Obj, targetNames: string[], problems: PathProblem[]): void {
  const local = host.url === undefined || host.url === null || host.url === 'local';
  if (local && host.ssh !== undefined && host.ssh !== null) {
    problems.push({
      path: ['hosts', name, 'ssh'],
      atKey: true,
      message: 'ssh settings apply only to a host reached over ssh (url: ssh://[user@]host)',
    });
  }
  if (typeof host.target === 'string' && !targetNames.includes(host.target)) {
    const known = targetNames.length
      ? `defined targets: ${targetNames.join(', ')}`
      : 'no targets are defined (add a targets: section)';
    problems.push({
      path: ['hosts', name, 'target'],
      message: `unknown target ${JSON.stringify(host.target)}; ${known}`,
    });
  }
  if (
    host.schedule !== undefined &&
    host.schedule !== null &&
    (host.target === undefined || host.target === null)
  ) {
    problems.push({
      path: ['hosts', name, 'target'],
      message: 'required with a schedule: expected target: NAME, where the scheduled backups go',
    });
  }
}

function checkJobTargets(name: string, job: Obj, targetNames: string[], problems: PathProblem[]): void {
  const known = targetNames.length
    ? `defined targets: ${targetNames.join(', ')}`
    : 'no targets are defined (add a targets: section)';
  const hasTarget = job.target !== undefined && job.target !== null;
  const hasTargets = job.targets !== undefined && job.targets !== null;
  if (hasTarget && hasTargets) {
    problems.push({
      path: ['jobs', name, 'targets'],
      atKey: true,
      message: 'give either target: NAME or targets: [NAME, ...], not both',
    });
  }
  if (!hasTarget && !hasTargets) {
    problems.push({
      path: ['jobs', name, 'target'],
      message: `required: expected target: NAME or targets: [NAME, ...]; ${known}`,
    });
  }
  if (typeof job.target === 'string' && !targetNames.includes(job.target)) {
    problems.push({
      path: ['jobs', name, 'target'],
      message: `unknown target ${JSON.stringify(job.target)}; ${known}`,
    });
  }
  if (Array.isArray(job.targets)) {
    const seen = new Set<string>();
    job.targets.forEach((t, i) => {
      if (typeof t !== 'string') return;
      if (!targetNames.includes(t)) {
        problems.push({
          path: ['jobs', name, 'targets', i],
          message: `unknown target ${JSON.stringify(t)}; ${known}`,
        });
      } else if (seen.has(t)) {
        problems.push({
          path: ['jobs', name, 'targets', i],
          message: `target ${JSON.stringify(t)} is listed twice`,
        });
      }
      seen.add(t);
    });
  }
}

/** The longest gap between two consecutive fire times over the next `samples` fires. */
export function longestGapMs(
  schedule: string,
  timeZone: string | undefined,
  from: Date,
  samples = 60,
): number {
  const runs = cronFor(schedule, timeZone).nextRuns(samples, from);
  let gap = 0;
  for (let i = 1; i < runs.length; i++) gap = Math.max(gap, runs[i]!.getTime() - runs[i - 1]!.getTime());
  return gap;
}

/** Things that are valid but probably not what the operator meant. */
export function configWarnings(config: HavenConfig, now = new Date()): PathProblem[] {
  const warnings: PathProblem[] = [];
  for (const job of Object.values(config.jobs)) {
    if (job.rpoMs === undefined || job.schedule === undefined || job.mode === 'continuous') continue;
    const gap = longestGapMs(job.schedule, config.timezone, now);
    if (gap >= job.rpoMs) {
      warnings.push({
        path: ['jobs', job.name, 'rpo'],
        message: `${formatDuration(job.rpoMs)} is not longer than the gap of up to ${formatDuration(gap)} between scheduled runs: the objective will be breached before each run`,
      });
    }
  }
  // Names are resolved by `haven doctor` and judged by the bound address at `haven serve`; here
  // only an address can be judged (a name may well be loopback, such as Debian's 127.0.1.1).
  const { listen, tlsProxy } = config.daemon;
  const exposed = isIP(listen.host) === 0 ? null : clearTextExposure(listen.host, listen.port, tlsProxy);
  if (exposed) warnings.push({ path: ['daemon', 'listen'], message: exposed });
  for (const host of Object.values(config.hosts)) {
    if (host.rpoMs === undefined || host.schedule === undefined) continue;
    const gap = longestGapMs(host.schedule, config.timezone, now);
    if (gap >= host.rpoMs) {
      warnings.push({
        path: ['hosts', host.name, 'rpo'],
        message: `${formatDuration(host.rpoMs)} is not longer than the gap of up to ${formatDuration(gap)} between scheduled backups: the objective will be breached before each backup`,
      });
    }
  }
  for (const drill of Object.values(config.drills)) {
    for (const server of Object.keys(drill.overrides)) {
      const selected = [...drill.servers, ...drill.hosts];
      if (selectServers(selected, [server]).length === 0) {
        warnings.push({
          path: ['drills', drill.name, 'overrides', server],
          atKey: true,
          message: `this drill's servers and hosts do not select ${JSON.stringify(server)}, so this override never applies`,
        });
      }
    }
  }
  return warnings;
}
