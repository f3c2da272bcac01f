/**
 * Targets as runs use them: a name from the configuration or a URL on the command line, and the
 * transport to reach it (sender.ts adds the stream handshake on top). Kept free of the protocol
 * and the engine so `haven protect` can start its receiver before loading them.
 */
import { isAbsolute } from 'node:path';
import type { HavenConfig, TargetConfig } from '../core/config.ts';
import { HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import {
  type Connection,
  openTarget,
  parseTarget,
  type Target,
  type TargetOptions,
  TransportError,
} from '../transport/index.ts';

export interface TargetOverrides {
  copies?: number;
  bandwidth?: number;
  compress?: number;
  ssh?: { options?: string[]; command?: string };
  tls?: { ca?: string; cert?: string; key?: string; tokenFile?: string };
  staging?: string;
}

export interface ResolvedTarget {
  /** Config name, or the URL when given directly. */
  name: string;
  url: string;
  endpoint: Target;
  copies: number;
  bandwidth: number;
  compress: number;
  ssh: { options: string[]; command: string } | undefined;
  tls:
    | { ca: string; cert: string | undefined; key: string | undefined; tokenFile: string | undefined }
    | undefined;
  /** The receiver's --staging ('auto': its largest cache drive); ssh and local targets only. */
  staging: string | undefined;
  /** Extra arguments for `haven receive` (ssh and local targets). */
  receiveArgs: string[];
}

export const DEFAULT_COPIES = 3;

/** A target written as a location rather than a name: a URL, or a path that looks like one. */
function isLocation(spec: string): boolean {
  return spec.includes('://') || isAbsolute(spec) || /^\.\.?\//.test(spec);
}

/**
 * A target by configuration name, else as a URL or local path. A bare word must be a configured
 * name and a local path must look like one (absolute, or starting with ./ or ../): a mistyped
 * name must not become a new store in the working directory. Flags override configured values.
 */
export function resolveTarget(spec: string, config: HavenConfig, over: TargetOverrides = {}): ResolvedTarget {
  const configured: TargetConfig | undefined = Object.hasOwn(config.targets, spec)
    ? config.targets[spec]
    : undefined;
  if (!configured && !isLocation(spec)) throw unknownTarget(spec, Object.keys(config.targets));
  const endpoint = configured ? parseTarget(configured.url) : parseTarget(spec);
  const remote = endpoint.kind !== 'local';
  const ssh =
    endpoint.kind === 'ssh'
      ? {
          options: over.ssh?.options ?? configured?.ssh?.options ?? [],
          command: over.ssh?.command ?? configured?.ssh?.command ?? 'haven',
        }
      : undefined;
  let tls: ResolvedTarget['tls'];
  if (endpoint.kind === 'tls') {
    const ca = over.tls?.ca ?? configured?.tls?.ca;
    if (!ca) {
      throw new HavenError('TARGET_TLS_CA_MISSING', `target ${spec} is tls:// but no CA is configured`, {
        kind: 'usage',
        hint: 'Give the CA that signed the receiver’s certificate: --tls-ca FILE, or tls.ca in the target’s configuration.',
      });
    }
    tls = {
      ca,
      cert: over.tls?.cert ?? configured?.tls?.cert,
      key: over.tls?.key ?? configured?.tls?.key,
      tokenFile: over.tls?.tokenFile ?? configured?.tls?.tokenFile,
    };
  }
  const staging = endpoint.kind === 'tls' ? undefined : (over.staging ?? configured?.staging);
  const noReflink = endpoint.kind !== 'tls' && configured?.reflink === false;
  return {
    name: configured ? spec : spec,
    url: configured?.url ?? spec,
    endpoint,
    copies: over.copies ?? configured?.copies ?? DEFAULT_COPIES,
    bandwidth: over.bandwidth ?? configured?.bandwidth ?? 0,
    compress: over.compress ?? configured?.compress ?? (remote ? 3 : 0),
    ssh,
    tls,
    staging,
    receiveArgs: [
      ...(staging ? ['--staging', staging] : []),
      ...(noReflink ? ['--no-reflink'] : []),
      ...(endpoint.kind === 'tls' ? [] : quotaArgs(configured)),
    ],
  };
}

/** The configured quotas as `haven receive` flags (sizes in bytes). */
function quotaArgs(t: TargetConfig | undefined): string[] {
  if (!t) return [];
  return [
    ...(t.quota === undefined ? [] : ['--quota', String(t.quota)]),
    ...Object.entries(t.serverQuotas).flatMap(([server, q]) => ['--server-quota', `${server}=${q}`]),
  ];
}

function unknownTarget(spec: string, names: string[]): HavenError {
  const known = names.length ? `Configured targets: ${names.sort().join(', ')}.` : 'No target is configured.';
  return new HavenError('TARGET_NOT_FOUND', `no target named ${JSON.stringify(spec)}`, {
    kind: 'not-found',
    hint: `${known} A store on this machine is written as a path: absolute (/srv/haven) or ./${spec}; a remote one as ssh://host/path or tls://host:port.`,
    details: { target: spec, configured: names },
  });
}

/** What openTarget needs to reach a resolved target. */
export function transportOptions(t: ResolvedTarget, log: Logger, receiveArgs?: string[]): TargetOptions {
  return {
    log,
    receiveArgs,
    sshOptions: t.ssh?.options,
    remoteCommand: t.ssh?.command,
    tls: t.tls && { ca: t.tls.ca, cert: t.tls.cert, key: t.tls.key },
  };
}

/**
 * A connection opened ahead of need. `haven protect` opens it before loading the engine, so the
 * receiver starts (about 0.3 s: a process, its modules) while the sender still loads and asks
 * libvirt about the server, instead of after. The run's first session takes it; `discard()`
 * closes it when nothing did (the server was unknown, a dry run stopped early). Open one only
 * where a receiver that goes unused changes nothing (protect.ts decides).
 */
export class EarlyConnection {
  private pending: Promise<Connection> | undefined;
  private failure: Error | undefined;

  constructor(t: ResolvedTarget, log: Logger) {
    this.pending = openTarget(t.endpoint, transportOptions(t, log, t.receiveArgs)).then((c) => {
      // Until a session listens, a failure (the receiver died while starting) is kept here: an
      // 'error' event nobody listens to would end the process.
      c.stream.on('error', (e) => {
        this.failure ??= e;
      });
      return c;
    });
    // Its failure is the first session's to report; unclaimed, nobody waits for it.
    this.pending.catch(() => {});
  }

  /**
   * The connection, once: later calls (reconnections) get undefined and open their own. One that
   * broke while it waited is closed and its failure thrown, like a connection that fails to open.
   */
  take(): Promise<Connection> | undefined {
    const p = this.pending;
    this.pending = undefined;
    return p?.then(async (c) => {
      if (!this.failure && !c.stream.destroyed) return c;
      await c.close();
      throw (
        this.failure ??
        new TransportError(
          'TRANSPORT_CONNECT_FAILED',
          'unavailable',
          `${c.description} closed before the session began`,
          {
            hint: 'See the receiver’s log on the target.',
          },
        )
      );
    });
  }

  async discard(): Promise<void> {
    const p = this.take();
    if (p) await p.then((c) => c.close()).catch(() => {});
  }
}
