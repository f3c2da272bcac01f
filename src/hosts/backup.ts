/**
 * `haven host backup <host>` (docs/hosts.md): new rescue media when the host's disk
 * layout changed or the target lacks media for the current one, then a new backup archive, both
 * stored as generations in the target's store. The seed's recipe (`rear checklayout || rear
 * mkrescue`), with the target as the judge of what it holds: media are remade when ReaR says the
 * layout changed, and also when the layout saved on the host is not the one the stored media
 * were made for (media made but never stored, a store that lost them).
 *
 * A dry run runs ReaR's simulation (`-s`) and asks the target through a read-only receiver:
 * nothing changes on the host (Haven's configuration is not rewritten) or on the target.
 */
import type { HavenConfig, HostConfig } from '../core/config.ts';
import { createHasher, type DigestAlgorithm } from '../core/digest.ts';
import { asHavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { planSessionFactory, type ResolvedTarget, resolveTarget, senderFactory } from '../jobs/index.ts';
import { FEATURE_HOST_FILES, type StreamSender } from '../protocol/index.ts';
import type { HostGeneration, HostManifest } from '../store/host/types.ts';
import { hostError } from './errors.ts';
import { Rear, type RearOptions } from './rear.ts';
import { backupExcludes, rearConfig } from './rear-config.ts';
import { sendHostFile } from './send.ts';
import { hostShell, requireReady } from './setup.ts';

export interface HostBackupOptions {
  host: HostConfig;
  config: HavenConfig;
  /** A target name or URL instead of the host's configured target. */
  target?: string;
  rear?: Omit<RearOptions, 'simulate'>;
  dryRun?: boolean;
  log: Logger;
  signal?: AbortSignal;
  onProgress?: (p: { phase: 'rescue' | 'backup'; bytes: number }) => void;
}

export interface StoredFile {
  id: string;
  seq: number;
  bytes: number;
  seconds: number;
}

export interface HostBackupReport {
  host: string;
  target: string;
  dryRun: boolean;
  /** Haven's ReaR configuration on the host was rewritten (it would be, in a dry run). */
  configUpdated: boolean;
  layout: 'unchanged' | 'changed' | 'none';
  rescue: { made: boolean; reason: string; stored?: StoredFile; rearSeconds?: number };
  backup: { stored?: StoredFile; takenAt?: string; excludes: string[] };
  /** ReaR's simulation output (dry run). */
  simulation?: string;
  seconds: number;
}

/** The target a host's backups go to: a name or URL given, else the configured one. */
export function hostTarget(host: HostConfig, config: HavenConfig, spec?: string): ResolvedTarget {
  const name = spec ?? host.target;
  if (!name) {
    throw hostError('HOST_NO_TARGET', 'usage', `host ${host.name} has no target`, {
      hint: `Set hosts.${host.name}.target in haven.yaml, or give --to TARGET.`,
    });
  }
  return resolveTarget(name, config);
}

/** Why new rescue media are needed, or null when the stored newest ones fit the host. */
export function rescueReason(
  layout: 'unchanged' | 'changed' | 'none',
  savedLayoutDigest: string | null,
  stored: HostManifest | null,
  configUpdated: boolean,
): string | null {
  const newest = stored?.rescue[0];
  if (layout === 'none' || savedLayoutDigest === null) return 'no disk layout saved on the host yet';
  if (!newest) return 'the target holds no rescue media of this host';
  if (configUpdated) return 'Haven’s ReaR configuration changed';
  if (layout === 'changed') return 'the disk layout changed';
  if (newest.facts.layoutDigest !== savedLayoutDigest)
    return 'the stored rescue media were made for another layout';
  return null;
}

function digestHex(alg: DigestAlgorithm, text: string): string {
  const h = createHasher(alg);
  h.update(Buffer.from(text, 'utf8'));
  return h.digest().toString('hex');
}

async function openSession(
  target: ResolvedTarget,
  host: string,
  dryRun: boolean,
  log: Logger,
): Promise<StreamSender | null> {
  const sender = dryRun
    ? await planSessionFactory(target, { log })()
    : await senderFactory(target, { log })();
  if (sender && !sender.supports(FEATURE_HOST_FILES)) {
    await sender.close();
    throw hostError(
      'HOST_TARGET_UNSUPPORTED',
      'unavailable',
      `the target ${target.name} does not store host files`,
      {
        hint: 'Update Haven on the target (host files need the same version as this one), or choose a filesystem store.',
        details: { host, target: target.url },
      },
    );
  }
  return sender;
}

export async function backupHost(o: HostBackupOptions): Promise<HostBackupReport> {
  const started = Date.now();
  const { host, log } = o;
  const target = hostTarget(host, o.config, o.target);
  const rear = new Rear(hostShell(host, log));
  await requireReady(rear, host.name);
  const detected = await rear.detect(o.config.cache.signature);
  const wanted = rearConfig(host, detected, o.config.cache.signature);
  const configUpdated = (await rear.readConfig()) !== wanted;
  if (configUpdated && !o.dryRun) {
    await rear.writeConfig(wanted);
    log.info('Haven’s ReaR configuration on the host was updated', { host: host.name });
  }
  const report: HostBackupReport = {
    host: host.name,
    target: target.name,
    dryRun: o.dryRun === true,
    configUpdated,
    layout: 'none',
    rescue: { made: false, reason: '' },
    backup: { excludes: backupExcludes(host, detected) },
    seconds: 0,
  };
  const sender = await openSession(target, host.name, o.dryRun === true, log);
  try {
    const stored = sender ? await sender.hostQuery(host.name) : null;
    report.layout = await rear.checkLayout(o.rear);
    const saved = await rear.savedLayout();
    const alg = sender?.digestAlgorithm ?? 'blake3';
    const reason = rescueReason(
      report.layout,
      saved === null ? null : digestHex(alg, saved),
      stored,
      configUpdated,
    );
    report.rescue = {
      made: reason !== null,
      reason: reason ?? 'the stored rescue media fit the host’s layout',
    };
    if (o.dryRun || !sender) {
      report.simulation = await simulate(rear, reason !== null, o.rear);
    } else {
      await storeFiles(o, target, rear, sender, stored, report);
    }
  } finally {
    await sender?.close();
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

async function simulate(rear: Rear, media: boolean, ro: HostBackupOptions['rear']): Promise<string> {
  const out: string[] = [];
  if (media) out.push((await rear.mkrescue({ ...ro, simulate: true })).stdout);
  out.push((await rear.simulateBackup(ro)).stdout);
  return out.join('\n');
}

async function storeFiles(
  o: HostBackupOptions,
  target: ResolvedTarget,
  rear: Rear,
  sender: StreamSender,
  stored: HostManifest | null,
  report: HostBackupReport,
): Promise<void> {
  const { host, log } = o;
  const copies = host.copies ?? target.copies;
  const bandwidth = target.bandwidth;
  let rescueId = stored?.rescue[0]?.id;
  if (report.rescue.made) {
    log.info(`making rescue media: ${report.rescue.reason}`, { host: host.name });
    const t0 = Date.now();
    await rear.mkrescue(o.rear);
    report.rescue.rearSeconds = (Date.now() - t0) / 1000;
    const facts = await rear.facts(sender.digestAlgorithm);
    const size = await rear.isoSize();
    const t1 = Date.now();
    const g = await sendHostFile(
      sender,
      { host: host.name, kind: 'rescue', copies, takenAt: new Date(t0).toISOString(), facts },
      rear.streamIso(),
      {
        bandwidth,
        expectedSize: size,
        signal: o.signal,
        onBytes: (bytes) => o.onProgress?.({ phase: 'rescue', bytes }),
        failed: (r) =>
          Promise.reject(
            hostError(
              'HOST_MEDIA_MISSING',
              'io',
              `cannot read the rescue media on ${host.name}: ${r.stderr.trim()}`,
            ),
          ),
      },
    );
    report.rescue.stored = storedFile(g, (Date.now() - t1) / 1000);
    rescueId = g.id;
    await rear
      .removeIso()
      .catch((e) => log.warn('could not remove the rescue media on the host', { err: asHavenError(e) }));
  }
  const takenAt = new Date().toISOString();
  const t2 = Date.now();
  const g = await sendHostFile(
    sender,
    {
      host: host.name,
      kind: 'backup',
      copies,
      takenAt,
      rescueId: rescueId!,
      excludes: report.backup.excludes,
    },
    rear.streamBackup(o.rear),
    {
      bandwidth,
      signal: o.signal,
      onBytes: (bytes) => o.onProgress?.({ phase: 'backup', bytes }),
      failed: (r) => rear.backupFailed(r),
    },
  );
  report.backup.stored = storedFile(g, (Date.now() - t2) / 1000);
  report.backup.takenAt = takenAt;
}

function storedFile(g: HostGeneration, seconds: number): StoredFile {
  return { id: g.id, seq: g.seq, bytes: g.size, seconds };
}
