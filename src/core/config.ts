/**
 * Loading haven.yaml: YAML (with line numbers kept), then the schema (config-schema.ts) and the
 * cross-key checks (config-checks.ts) side by side, so one `CONFIG_INVALID` error lists every
 * problem in the file, each with its file, line, column and key path. On success the result is a
 * typed `HavenConfig` with defaults applied (config-types.ts).
 *
 * A configuration file is optional for commands that take everything on their command line:
 * `loadConfigIfPresent` returns the defaults when the default file does not exist, and only
 * insists on a file that was asked for explicitly (`--config`, `HAVEN_CONFIG`).
 */
import { readFileSync, statSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { configWarnings, crossCheck, type PathProblem, type PathSegment } from './config-checks.ts';
import { configSchema, type RawConfig, retentionSchema, type UnknownKeyParams } from './config-schema.ts';
import type {
  ConfigProblem,
  DrillConfig,
  DrillOverride,
  HavenConfig,
  HostConfig,
  JobConfig,
  RetentionConfig,
  ScrubConfig,
  TargetConfig,
} from './config-types.ts';
import { cronFor } from './config-values.ts';
import { HavenError, ioError } from './errors.ts';
import { DEFAULT_RECHECK_AFTER_MS } from './integrity.ts';
import { storeQueryText } from './store-query.ts';

export { selectServers } from './config-patterns.ts';
export * from './config-types.ts';

/** Larger than any sensible configuration; refuses to read a wrong file (an image) into memory. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

export class ConfigError extends HavenError {
  readonly problems: ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[]) {
    const n = problems.length;
    super(
      'CONFIG_INVALID',
      `invalid configuration ${file}: ${n} problem${n === 1 ? '' : 's'}\n${problems.map((p) => `  ${formatProblem(file, p)}`).join('\n')}`,
      {
        kind: 'config',
        hint: 'Fix the keys named above (docs/configuration.md describes each), then run `haven config check`.',
        details: { file, problems },
      },
    );
    this.problems = problems;
  }
}

export class ConfigNotFoundError extends HavenError {
  constructor(file: string, cause?: unknown) {
    super('CONFIG_NOT_FOUND', `configuration file ${file} does not exist`, {
      kind: 'not-found',
      cause,
      hint: 'Create it (examples/haven.yaml is a complete example), or point --config or HAVEN_CONFIG at the right file.',
      details: { file },
    });
  }
}

/** `file:line:column: path: message`, the form editors and terminals make clickable. */
export function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line === undefined ? file : `${file}:${p.line}:${p.column ?? 1}`;
  return p.path ? `${where}: ${p.path}: ${p.message}` : `${where}: ${p.message}`;
}

/** `jobs.nightly.targets[1]`; names that are not plain words are quoted: `targets["dr 1"]`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z0-9_+-]+$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** The edit distance used for "did you mean"; keys are short, so the quadratic cost is nothing. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function unknownKeyMessage(key: PathSegment | undefined, allowed: string[]): string {
  const name = String(key);
  const close = allowed
    .map((k) => ({ k, d: distance(name.toLowerCase(), k) }))
    .filter(({ d }) => d <= 2 && d < name.length)
    .sort((x, y) => x.d - y.d)[0];
  return `unknown key${close ? ` (did you mean ${close.k}?)` : ''}; expected one of: ${allowed.join(', ')}`;
}

/**
 * Where a key path is in the document: the node of its value (or of its key when `atKey`), or the
 * nearest enclosing node that exists when the key is missing.
 */
function locate(
  contents: Node | null,
  path: readonly PathSegment[],
  atKey: boolean,
): [number, number] | undefined {
  let node: unknown = contents;
  let range: readonly number[] | undefined = (contents as Node | null)?.range ?? undefined;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg),
      );
      if (!pair) break;
      const keyRange = isScalar(pair.key) ? pair.key.range : undefined;
      const valueRange = (pair.value as Node | null)?.range;
      range = (last && atKey) || !valueRange ? (keyRange ?? range) : valueRange;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item?.range) break;
      range = item.range;
      node = item;
    } else break;
  }
  return range ? [range[0]!, range[1]!] : undefined;
}

interface Located extends PathProblem {
  offset: number;
}

function toProblems(items: Located[], lines: LineCounter): ConfigProblem[] {
  return items
    .sort((a, b) => a.offset - b.offset)
    .map((p) => {
      const pos = p.offset >= 0 ? lines.linePos(p.offset) : undefined;
      return { path: formatPath(p.path), message: p.message, line: pos?.line, column: pos?.col };
    });
}

/** null-prototype record from entries (see config-types.ts). */
function record<T>(pairs: [string, T][]): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  for (const [k, v] of pairs) out[k] = v;
  return out;
}

/** `hosts.<name>` as Haven uses it (docs/hosts.md). */
function hostsOf(raw: RawConfig['hosts']): Record<string, HostConfig> {
  return record(
    Object.entries(raw ?? {}).map(([name, h]): [string, HostConfig] => [
      name,
      {
        name,
        url: h.url.kind === 'local' ? 'local' : hostUrlText(h.url),
        endpoint: h.url,
        sshOptions: h.ssh?.options ?? [],
        target: h.target,
        schedule: h.schedule,
        copies: h.copies,
        rpoMs: h.rpo,
        exclude: h.exclude,
        rear: {
          firmware: h.rear.firmware,
          userInputTimeoutMs: h.rear.user_input_timeout,
        },
      },
    ]),
  );
}

function drillsOf(raw: RawConfig['drills']): Record<string, DrillConfig> {
  return record(
    Object.entries(raw ?? {}).map(([name, d]): [string, DrillConfig] => [
      name,
      {
        name,
        store: d.store,
        servers: d.servers ?? [],
        hosts: d.hosts ?? [],
        schedule: d.schedule,
        bootMarker: d.boot_marker,
        timeoutMs: d.timeout,
        recoveryTimeoutMs: d.recovery_timeout,
        hostVm: {
          memoryBytes: d.host_vm?.memory ?? 2 * 1024 ** 3,
          vcpus: d.host_vm?.vcpus ?? 2,
          virtType: d.host_vm?.virt_type,
        },
        overrides: record(
          Object.entries(d.overrides ?? {}).map(([server, o]): [string, DrillOverride] => [
            server,
            { bootMarker: o.boot_marker, timeoutMs: o.timeout },
          ]),
        ),
        networks: d.networks,
      },
    ]),
  );
}

function build(file: string | null, raw: RawConfig): HavenConfig {
  const targets = record(
    Object.entries(raw.targets ?? {}).map(([name, t]): [string, TargetConfig] => [
      name,
      {
        name,
        url: urlText(t.url),
        endpoint: t.url,
        copies: t.copies,
        bandwidth: t.bandwidth,
        compress: t.compress ?? (t.url.kind === 'local' ? 0 : 3),
        ssh: t.url.kind === 'ssh' ? (t.ssh ?? { options: [], command: 'haven' }) : undefined,
        staging: t.staging,
        reflink: t.reflink,
        quota: t.quota,
        serverQuotas: record(
          Object.entries(t.servers ?? {}).flatMap(([server, st]): [string, number][] =>
            st.quota === undefined ? [] : [[server, st.quota]],
          ),
        ),
        tls: t.tls
          ? { ca: t.tls.ca, cert: t.tls.cert, key: t.tls.key, tokenFile: t.tls.token_file }
          : undefined,
      },
    ]),
  );
  const jobs = record(
    Object.entries(raw.jobs ?? {}).map(([name, j]): [string, JobConfig] => [
      name,
      {
        name,
        servers: j.servers,
        targets: j.targets ?? (j.target === undefined ? [] : [j.target]),
        schedule: j.schedule,
        mode: j.mode,
        intervalMs: j.interval,
        windowMs: j.journal,
        consistency: j.consistency,
        rpoMs: j.rpo,
        parallel: j.parallel,
        retries: j.retries,
        retryBackoffMs: j.retry_backoff,
        copies: j.copies,
        cache: j.cache,
        buffer: j.buffer,
      },
    ]),
  );
  const drills = drillsOf(raw.drills);
  const hosts = hostsOf(raw.hosts);
  const scrubs = record(
    Object.entries(raw.scrubs ?? {}).map(([name, sc]): [string, ScrubConfig] => [
      name,
      { name, store: sc.store, schedule: sc.schedule },
    ]),
  );
  const email = raw.alerts?.email;
  const webhook = raw.alerts?.webhook;
  return {
    file,
    timezone: raw.timezone,
    targets,
    jobs,
    drills,
    hosts,
    scrubs,
    alerts: {
      email: email
        ? {
            to: email.to,
            from: email.from,
            smtp: email.smtp,
            passwordFile: email.password_file,
            minSeverity: email.min_severity,
          }
        : undefined,
      webhook: webhook
        ? { url: webhook.url, tokenFile: webhook.token_file, minSeverity: webhook.min_severity }
        : undefined,
    },
    cache: { signature: raw.cache?.signature ?? '.dr_cache' },
    daemon: {
      listen: raw.daemon?.listen ?? { host: '127.0.0.1', port: 8470 },
      tlsProxy: raw.daemon?.tls_proxy ?? [],
      progressStreams: {
        total: raw.daemon?.progress_streams ?? 64,
        perClient: raw.daemon?.progress_streams_per_client ?? 8,
      },
    },
    retention: retentionOf(raw.retention),
    integrity: { recheckMs: raw.integrity?.recheck ?? DEFAULT_RECHECK_AFTER_MS },
    definitions: {
      bootFiles: raw.definitions?.boot_files ?? [],
      allow: record(Object.entries(raw.definitions?.allow ?? {})),
    },
    networks: {
      map: raw.networks?.map ?? Object.create(null),
      mac: raw.networks?.mac,
      servers: record(Object.entries(raw.networks?.servers ?? {})),
    },
    warnings: [],
  };
}

function retentionOf(r: RawConfig['retention']): RetentionConfig {
  const { logs, runs, events, unused_checkpoints } = r ?? retentionSchema.parse({});
  return {
    logs: { maxAgeMs: logs.max_age, maxBytes: logs.max_size, maxFiles: logs.max_files },
    runsMs: runs,
    eventsMs: events,
    unusedCheckpointsMs: unused_checkpoints,
  };
}

function hostUrlText(e: Extract<HostConfig['endpoint'], { kind: 'ssh' }>): string {
  const host = e.host.includes(':') ? `[${e.host}]` : e.host;
  return `ssh://${e.user ? `${e.user}@` : ''}${host}${e.port ? `:${e.port}` : ''}`;
}

function urlText(e: TargetConfig['endpoint']): string {
  switch (e.kind) {
    case 'local':
      return e.lvm || e.rbd ? `file://${e.path}${storeQueryText(e)}` : e.path;
    case 'tls':
      return `tls://${e.host}:${e.port}`;
    case 'ssh':
      return `ssh://${e.user ? `${e.user}@` : ''}${e.host}${e.port ? `:${e.port}` : ''}${e.path}${storeQueryText(e)}`;
  }
}

/**
 * Parses and checks the text of a configuration file. `fileName` is only used in messages.
 * Throws ConfigError listing every problem found.
 */
export function parseConfig(text: string, fileName: string, now = new Date()): HavenConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, merge: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      fileName,
      doc.errors.map((e) => {
        const pos = lines.linePos(e.pos[0]);
        return {
          path: '',
          message: `YAML syntax error: ${e.message.split('\n')[0]}`,
          line: pos.line,
          column: pos.col,
        };
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 }) ?? {};
  } catch (e) {
    throw new ConfigError(fileName, [
      { path: '', message: `YAML error: ${(e as Error).message}`, line: undefined, column: undefined },
    ]);
  }

  const contents = doc.contents as Node | null;
  const place = (p: PathProblem): Located => ({
    ...p,
    offset: locate(contents, p.path, p.atKey ?? false)?.[0] ?? -1,
  });

  const found: Located[] = crossCheck(raw).map(place);
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = issue.path.filter((s): s is PathSegment => typeof s !== 'symbol');
      const params = (issue as { params?: Partial<UnknownKeyParams> }).params;
      const unknownKey = params?.unknownKey === true;
      found.push(
        place({
          path,
          atKey: unknownKey,
          message: unknownKey ? unknownKeyMessage(path.at(-1), params.allowed ?? []) : issue.message,
        }),
      );
    }
  }
  if (found.length > 0 || !parsed.success) throw new ConfigError(fileName, toProblems(found, lines));

  const config = build(fileName, parsed.data);
  config.warnings = toProblems(configWarnings(config, now).map(place), lines);
  return config;
}

/** Reads and parses a configuration file; a missing file is CONFIG_NOT_FOUND. */
export function loadConfig(path: string, now = new Date()): HavenConfig {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_CONFIG_BYTES) {
      throw new ConfigError(path, [
        {
          path: '',
          message: `the file is ${size} bytes, more than the ${MAX_CONFIG_BYTES} a configuration may have: is this the right file?`,
          line: undefined,
          column: undefined,
        },
      ]);
    }
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof HavenError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new ConfigNotFoundError(path, err);
    throw ioError(err, `configuration file ${path}`);
  }
  return parseConfig(text, path, now);
}

/** The configuration of a host without a configuration file: no targets, jobs or drills. */
export function defaultConfig(): HavenConfig {
  return build(null, {} as RawConfig);
}

/**
 * For commands that can run without a file: the defaults when the file is missing, unless the
 * caller says the file was asked for by name (`--config`, `HAVEN_CONFIG`).
 */
export function loadConfigIfPresent(path: string, options: { required: boolean }): HavenConfig {
  try {
    return loadConfig(path);
  } catch (e) {
    if (e instanceof ConfigNotFoundError && !options.required) return defaultConfig();
    throw e;
  }
}

/** The next fire time of a schedule after `after`, in the configuration's time zone; null if none. */
export function nextRun(schedule: string, timeZone: string | undefined, after = new Date()): Date | null {
  return cronFor(schedule, timeZone).nextRun(after);
}

/** The settings of a drill given on the command line only (`haven drill`, `haven host drill`). */
export function adHocDrill(store: string, select: { servers?: string[]; hosts?: string[] }): DrillConfig {
  return {
    name: 'manual',
    store,
    servers: select.servers ?? [],
    hosts: select.hosts ?? [],
    schedule: undefined,
    bootMarker: undefined,
    timeoutMs: 300_000,
    recoveryTimeoutMs: 3_600_000,
    hostVm: { memoryBytes: 2 * 1024 ** 3, vcpus: 2, virtType: undefined },
    overrides: Object.create(null) as Record<string, DrillOverride>,
    networks: 'isolated',
  };
}

/** How many generations a job keeps on a target: the job's override, else the target's own. */
export function effectiveCopies(job: JobConfig, target: TargetConfig): number {
  return job.copies ?? target.copies;
}
