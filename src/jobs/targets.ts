/**
 * Targets as runs use them: a name from the configuration or a URL on the command line, turned
 * into a way to open a replication session (transport + stream handshake) as many times as a
 * run needs (a broken connection is reopened to resume).
 */
import { readFile } from 'node:fs/promises';
import type { HavenConfig, TargetConfig } from '../core/config.ts';
import { HavenError, ioError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { StreamSender } from '../protocol/index.ts';
import { openTarget, parseTarget, type Target } from '../transport/index.ts';

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

/**
 * A target by configuration name, else as a URL or local path. Flags override configured
 * values.
 */
export function resolveTarget(spec: string, config: HavenConfig, over: TargetOverrides = {}): ResolvedTarget {
  const configured: TargetConfig | undefined = config.targets[spec];
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
    receiveArgs: staging ? ['--staging', staging] : [],
  };
}

async function readToken(path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (e) {
    throw ioError(e as NodeJS.ErrnoException, `token file ${path}`);
  }
}

/**
 * Opens a new session to the target each time it is called. Closing the returned sender also
 * ends the transport (waits for the child process, closes the socket).
 */
export function senderFactory(
  t: ResolvedTarget,
  options: { log: Logger; receiveArgs?: string[] },
): () => Promise<StreamSender> {
  return async () => {
    const conn = await openTarget(t.endpoint, {
      log: options.log,
      receiveArgs: options.receiveArgs,
      sshOptions: t.ssh?.options,
      remoteCommand: t.ssh?.command,
      tls: t.tls && { ca: t.tls.ca, cert: t.tls.cert, key: t.tls.key },
    });
    try {
      const sender = await StreamSender.connect(conn.stream, {
        compression:
          t.compress > 0 ? { algorithm: 'zstd', level: t.compress } : { algorithm: 'none', level: 0 },
        token: t.tls?.tokenFile ? await readToken(t.tls.tokenFile) : undefined,
        log: options.log,
      });
      const close = sender.close.bind(sender);
      sender.close = async () => {
        await close();
        await conn.close();
      };
      return sender;
    } catch (e) {
      await conn.close();
      throw e;
    }
  };
}
