/**
 * The shape of haven.yaml as a zod schema. zod walks the whole document and collects every
 * problem with its key path; the leaves are our own parsers (config-values.ts), so each message
 * says what was expected in an operator's words rather than in TypeScript's. Unknown keys are
 * errors (a misspelt `copys: 3` silently falling back to a default is how data gets lost).
 *
 * This schema only checks each value on its own; checks across keys (a job's target must exist,
 * `target` and `targets` exclude each other) are in config-checks.ts, so that they run even when
 * some other part of the file is broken.
 */
import { z } from 'zod';
import { parseServerPattern, selectsSomething } from './config-patterns.ts';
import {
  describeValue,
  type HostEndpoint,
  parseAbsolutePath,
  parseBoolean,
  parseCron,
  parseDurationValue,
  parseEmail,
  parseEnum,
  parseFileName,
  parseHostUrl,
  parseInteger,
  parseListen,
  parseProxyAddresses,
  parseRateValue,
  parseSizeValue,
  parseString,
  parseTargetUrl,
  parseTimeZone,
  parseUrl,
  ValueProblem,
} from './config-values.ts';
import { DEFINITION_ALLOWANCES } from './definition-context.ts';
import { DEFAULT_RECHECK_AFTER_MS } from './integrity.ts';
import { MAC_POLICIES, type NetworkMapping, parseNetworkRef, refText } from './network-map.ts';

export const SEVERITIES = ['info', 'warning', 'error', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Marks the issue a catch-all pushes for a key the schema does not know. */
export interface UnknownKeyParams {
  unknownKey: true;
  allowed: string[];
}

/**
 * A leaf: runs `parse` on the raw YAML value (undefined when the key is absent) and turns a
 * ValueProblem into a zod issue at this key's path.
 */
function leaf<T>(parse: (v: unknown) => T) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): T => {
      try {
        return parse(v);
      } catch (e) {
        if (!(e instanceof ValueProblem)) throw e;
        const message = v === undefined ? `required: ${e.message.replace(/, got nothing$/, '')}` : e.message;
        ctx.issues.push({ code: 'custom', message, input: v });
        return z.NEVER;
      }
    });
}

/** A leaf that may be left out: `fallback` when absent. */
function opt<T, D extends T | undefined>(parse: (v: unknown) => T, fallback: D) {
  return leaf((v): T | D => (v === undefined ? fallback : parse(v)));
}

/** A mapping with a fixed set of keys; anything else is reported as an unknown key. */
function mapping<S extends z.ZodRawShape>(what: string, shape: S) {
  const allowed = Object.keys(shape);
  return z
    .object(shape, {
      error: (iss) =>
        iss.input === undefined
          ? `required: expected ${what}`
          : `expected ${what} (keys: ${allowed.join(', ')}), got ${describeValue(iss.input)}`,
    })
    .catchall(
      z.unknown().transform((v, ctx) => {
        const params: UnknownKeyParams = { unknownKey: true, allowed };
        ctx.issues.push({ code: 'custom', message: 'unknown key', input: v, params });
        return z.NEVER;
      }),
    );
}

/** An optional section: absent and empty (`key:` with nothing after it) both mean "not given". */
function section<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === null ? undefined : v), schema.optional());
}

/** Named entries (targets, jobs, drills): a mapping from name to `entry`. */
function named<T extends z.ZodType>(what: string, entry: T) {
  return section(
    z.record(z.string(), entry, {
      error: (iss) =>
        `expected a mapping from ${what} names to their settings, got ${describeValue(iss.input)}`,
    }),
  );
}

function list<T extends z.ZodType>(what: string, item: T) {
  return z.array(item, {
    error: (iss) =>
      iss.input === undefined
        ? `required: expected a list of ${what}`
        : `expected a list of ${what}, got ${describeValue(iss.input)}`,
  });
}

const servers = list('server names or glob patterns', leaf(parseServerPattern))
  .min(1, { error: 'must list at least one server name or pattern', abort: true })
  .refine(selectsSomething, {
    error: 'only "!" exclusions: add the servers to select first, e.g. ["*", "!test-*"]',
  });

const hostPatterns = list('host names or glob patterns', leaf(parseServerPattern))
  .min(1, { error: 'must list at least one host name or pattern', abort: true })
  .refine(selectsSomething, {
    error: 'only "!" exclusions: add the hosts to select first, e.g. ["*", "!lab-*"]',
  });

const sshOptionList = opt((v) => {
  if (!Array.isArray(v) || v.some((o) => typeof o !== 'string' || o === '')) {
    throw new ValueProblem(
      `expected a list of ssh command-line arguments such as ["-o", "ConnectTimeout=10"], got ${describeValue(v)}`,
    );
  }
  return v as string[];
}, [] as string[]);

const sshOptions = mapping('ssh settings', {
  options: sshOptionList,
  command: opt(
    (v) => parseString(v, 'the remote haven command, e.g. haven or /usr/local/bin/haven'),
    'haven',
  ),
});

const tlsOptions = mapping('TLS settings', {
  ca: leaf((v) => parseAbsolutePath(v, 'the absolute path of the CA certificate that signed the receiver')),
  cert: opt((v) => parseAbsolutePath(v, 'the absolute path of this host’s client certificate'), undefined),
  key: opt((v) => parseAbsolutePath(v, 'the absolute path of this host’s client key'), undefined),
  token_file: opt((v) => parseAbsolutePath(v, 'the absolute path of a file holding the token'), undefined),
});

/** Per-server settings of a target: the server's quota there. */
const targetServer = mapping('server settings at the target', {
  quota: opt(parseSizeValue, undefined),
});

export const targetSchema = mapping('target settings', {
  url: leaf(parseTargetUrl),
  copies: opt((v) => parseInteger(v, 1, 100), 3),
  bandwidth: opt(parseRateValue, 0),
  compress: opt((v) => parseInteger(v, 0, 19), undefined),
  ssh: section(sshOptions),
  tls: section(tlsOptions),
  // False: the target keeps generations as separate images even where it could clone them.
  reflink: opt(parseBoolean, true),
  // Where the target stages deltas: `auto` (its largest cache drive), or a directory there.
  staging: opt(
    (v) =>
      v === 'auto'
        ? 'auto'
        : parseAbsolutePath(
            v,
            'auto (the target’s largest cache drive) or an absolute directory on the target',
          ),
    undefined,
  ),
  // The most the store may hold (all servers), and per server: `haven receive --quota`.
  quota: opt(parseSizeValue, undefined),
  servers: named('server', targetServer),
});

export const jobSchema = mapping('job settings', {
  servers,
  // Whether the names exist is checked across keys (config-checks.ts).
  target: opt((v) => parseString(v, 'the name of a target'), undefined),
  targets: section(
    list(
      'target names',
      leaf((v) => parseString(v, 'the name of a target')),
    ).min(1, {
      error: 'must list at least one target',
    }),
  ),
  schedule: opt(parseCron, undefined),
  // Continuous protection (docs/continuous.md): run by `haven serve` until it stops.
  mode: opt((v) => parseEnum(v, ['periodic', 'continuous'] as const), 'periodic'),
  interval: opt((v) => parseDurationValue(v, 500), 2000),
  journal: opt((v) => parseDurationValue(v, 1000), 2 * 3600_000),
  consistency: opt((v) => parseEnum(v, ['live', 'shutdown'] as const), 'live'),
  rpo: opt((v) => parseDurationValue(v, 1000), undefined),
  parallel: opt((v) => parseInteger(v, 1, 64), 1),
  retries: opt((v) => parseInteger(v, 0, 100), 2),
  retry_backoff: opt(parseDurationValue, 60_000),
  copies: opt((v) => parseInteger(v, 1, 100), undefined),
  cache: opt(parseBoolean, false),
  buffer: opt(
    (v) => {
      const bytes = parseSizeValue(v);
      if (bytes < 1024 ** 2 || bytes > 4 * 1024 ** 3) {
        throw new ValueProblem(`expected a size from 1MiB to 4GiB, got ${describeValue(v)}`);
      }
      return bytes;
    },
    64 * 1024 ** 2,
  ),
});

export type BootMarker = { serial: string } | { agent: true };

const bootMarker = mapping('a boot marker: { serial: "text" } or { agent: true }', {
  serial: opt(
    (v) => parseString(v, 'the text the serial console prints once booted, e.g. "login:"'),
    undefined,
  ),
  agent: opt((v) => {
    if (v !== true)
      throw new ValueProblem(`expected true (wait for the guest agent), got ${describeValue(v)}`);
    return true as const;
  }, undefined),
}).transform((m, ctx): BootMarker => {
  if (m.serial !== undefined && m.agent === undefined) return { serial: m.serial };
  if (m.agent !== undefined && m.serial === undefined) return { agent: true };
  ctx.issues.push({
    code: 'custom',
    message: 'expected exactly one of serial: "text" or agent: true',
    input: m,
  });
  return z.NEVER;
});

const drillOverride = mapping('per-server drill settings', {
  boot_marker: section(bootMarker),
  timeout: opt((v) => parseDurationValue(v, 1000), undefined),
});

/** The VM a host drill recovers into (docs/hosts.md). */
const hostVm = mapping('host drill VM settings', {
  memory: opt(
    (v) => {
      const bytes = parseSizeValue(v);
      if (bytes < 512 * 1024 ** 2)
        throw new ValueProblem(`expected at least 512MiB, got ${describeValue(v)}`);
      return bytes;
    },
    2 * 1024 ** 3,
  ),
  vcpus: opt((v) => parseInteger(v, 1, 64), 2),
  virt_type: opt((v) => parseEnum(v, ['kvm', 'qemu'] as const), undefined),
});

/** `map:` of a `networks` section: bridge or network names at the primary → at this DR site. */
function parseNetworkMap(v: unknown): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new ValueProblem(
      `expected a mapping from the primary's bridge or network names to this site's, e.g. { prod-br: dr-br }, got ${describeValue(v)}`,
    );
  }
  const out: Record<string, string> = Object.create(null);
  for (const [from, to] of Object.entries(v)) {
    try {
      out[refText(parseNetworkRef(from))] = refText(parseNetworkRef(to));
    } catch (e) {
      if (e instanceof ValueProblem) throw new ValueProblem(`${JSON.stringify(from)}: ${e.message}`);
      throw e;
    }
  }
  return out;
}

const macPolicy = (v: unknown) => parseEnum(v, MAC_POLICIES);

/** `{ map, mac }`: one layer of network settings (per server, or a drill's own). */
function parseNetworkMapping(v: unknown): NetworkMapping {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new ValueProblem(
      `expected network settings { map: {…}, mac: keep|generate }, got ${describeValue(v)}`,
    );
  }
  const { map, mac, ...rest } = v as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) throw new ValueProblem(`unknown key ${unknown[0]} (keys: map, mac)`);
  return {
    map: map === undefined ? Object.create(null) : parseNetworkMap(map),
    mac: mac === undefined ? undefined : macPolicy(mac),
  };
}

/** This DR site's failover network mapping (core/network-map.ts, docs/recovery.md). */
const networksSchema = mapping('network settings', {
  map: opt(parseNetworkMap, undefined),
  mac: opt(macPolicy, undefined),
  servers: named('server', leaf(parseNetworkMapping)),
});

export const drillSchema = mapping('drill settings', {
  store: leaf((v) => parseAbsolutePath(v, 'the absolute path of the store on this DR host')),
  // Whether a drill selects servers, hosts or both is checked across keys (config-checks.ts).
  servers: section(servers),
  hosts: section(hostPatterns),
  schedule: opt(parseCron, undefined),
  boot_marker: section(bootMarker),
  timeout: opt((v) => parseDurationValue(v, 1000), 300_000),
  recovery_timeout: opt((v) => parseDurationValue(v, 1000), 3_600_000),
  host_vm: section(hostVm),
  overrides: named('server', drillOverride),
  // isolated (no interfaces, the default), mapped (the site's `networks`), or a mapping of its own.
  networks: opt(
    (v) => (typeof v === 'string' ? parseEnum(v, ['isolated', 'mapped'] as const) : parseNetworkMapping(v)),
    'isolated' as const,
  ),
});

/** ReaR settings Haven writes into its own ReaR configuration on a host (hosts/rear-config.ts). */
const rearSettings = mapping('ReaR settings', {
  firmware: opt(parseBoolean, true),
  user_input_timeout: opt((v) => parseDurationValue(v, 1000), 30_000),
});

export const hostSchema = mapping('host settings', {
  url: opt(parseHostUrl, { kind: 'local' } as HostEndpoint),
  ssh: section(mapping('ssh settings', { options: sshOptionList })),
  // Whether the target exists is checked across keys (config-checks.ts).
  target: opt((v) => parseString(v, 'the name of a target'), undefined),
  schedule: opt(parseCron, undefined),
  copies: opt((v) => parseInteger(v, 1, 100), undefined),
  rpo: opt((v) => parseDurationValue(v, 1000), undefined),
  exclude: opt((v) => {
    if (!Array.isArray(v))
      throw new ValueProblem(`expected a list of absolute paths, got ${describeValue(v)}`);
    return v.map((p) => parseAbsolutePath(p, 'an absolute path on the host'));
  }, [] as string[]),
  rear: z.preprocess((v) => v ?? {}, rearSettings),
});

/** A scheduled `haven verify` of a store on this DR host (a scrub, like ZFS's). */
export const scrubSchema = mapping('scrub settings', {
  store: leaf((v) => parseAbsolutePath(v, 'the absolute path of the store on this DR host')),
  schedule: leaf(parseCron),
});

const severity = opt((v) => parseEnum(v, SEVERITIES), 'warning' as Severity);

const emailAlerts = mapping('email alert settings', {
  to: leaf((v) => {
    const items = Array.isArray(v) ? v : typeof v === 'string' ? [v] : undefined;
    if (!items || items.length === 0) {
      throw new ValueProblem(`expected a mail address or a list of them, got ${describeValue(v)}`);
    }
    return items.map(parseEmail);
  }),
  from: leaf(parseEmail),
  smtp: leaf((v) => parseUrl(v, ['smtp', 'smtps'], 'smtp://mail.example.com:25').href),
  password_file: opt(
    (v) => parseAbsolutePath(v, 'the absolute path of a file holding the SMTP password'),
    undefined,
  ),
  min_severity: severity,
});

const webhookAlerts = mapping('webhook alert settings', {
  url: leaf((v) => parseUrl(v, ['http', 'https'], 'https://hooks.example.com/haven').href),
  token_file: opt(
    (v) => parseAbsolutePath(v, 'the absolute path of a file holding the bearer token'),
    undefined,
  ),
  min_severity: severity,
});

/** A retention limit: a value, or `off` to keep everything (null). */
function limitOrOff<T>(parse: (v: unknown) => T, fallback: T | null) {
  return opt((v): T | null => (v === 'off' ? null : parse(v)), fallback);
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const logRetention = mapping('log retention settings', {
  max_age: limitOrOff((v) => parseDurationValue(v, HOUR_MS), 30 * DAY_MS),
  max_size: limitOrOff(parseSizeValue, 1024 ** 3),
  max_files: limitOrOff((v) => parseInteger(v, 10, 10_000_000), 10_000),
});

/** Defaults: docs/configuration.md `retention`. */
export const retentionSchema = mapping('retention settings', {
  // Absent or empty: every default of the section.
  logs: z.preprocess((v) => v ?? {}, logRetention),
  runs: limitOrOff((v) => parseDurationValue(v, HOUR_MS), 90 * DAY_MS),
  events: limitOrOff((v) => parseDurationValue(v, HOUR_MS), 90 * DAY_MS),
  unused_checkpoints: limitOrOff((v) => parseDurationValue(v, HOUR_MS), 30 * DAY_MS),
});

/** What DR definitions may hold at this DR site (core/definition-rules.ts, docs/recovery.md). */
const definitionsSchema = mapping('definition settings', {
  boot_files: opt((v) => {
    if (!Array.isArray(v)) {
      throw new ValueProblem(
        `expected a list of absolute directories on this DR host, got ${describeValue(v)}`,
      );
    }
    return v.map((d) => parseAbsolutePath(d, 'an absolute directory on this DR host'));
  }, [] as string[]),
  allow: named(
    'server',
    list(
      'allowances',
      leaf((v) => parseEnum(v, DEFINITION_ALLOWANCES)),
    ),
  ),
});

export const configSchema = mapping('the Haven configuration', {
  timezone: opt(parseTimeZone, undefined),
  targets: named('target', targetSchema),
  jobs: named('job', jobSchema),
  drills: named('drill', drillSchema),
  hosts: named('host', hostSchema),
  scrubs: named('scrub', scrubSchema),
  alerts: section(
    mapping('alert settings', { email: section(emailAlerts), webhook: section(webhookAlerts) }),
  ),
  cache: section(mapping('cache drive settings', { signature: opt(parseFileName, '.dr_cache') })),
  daemon: section(
    mapping('daemon settings', {
      listen: opt(parseListen, { host: '127.0.0.1', port: 8470 }),
      tls_proxy: opt(parseProxyAddresses, []),
      progress_streams: opt((v) => parseInteger(v, 1, 10_000), 64),
      progress_streams_per_client: opt((v) => parseInteger(v, 1, 10_000), 8),
    }),
  ),
  retention: section(retentionSchema),
  // 0 re-reads the generation a commit builds on every time (docs/store-format.md).
  integrity: section(
    mapping('integrity settings', { recheck: opt(parseDurationValue, DEFAULT_RECHECK_AFTER_MS) }),
  ),
  definitions: section(definitionsSchema),
  networks: section(networksSchema),
});

export type RawConfig = z.output<typeof configSchema>;
