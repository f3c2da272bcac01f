/**
 * `haven host drill <host> --store PATH` (docs/hosts.md, "Drills"): proves that a stored
 * backup archive, with the rescue media made for its layout, rebuilds the host. In an isolated VM
 * (no network) with blank disks as large as the host's, the media's rescue system boots and runs
 * `rear recover` unattended from the archive on a backup medium; at ReaR's reboot the VM ends and
 * the recovered disks boot alone, until the configured marker shows on the console. Pass or fail
 * and the measured recovery time go into the store's manifest; everything the drill created is
 * removed. The host is held meanwhile, so no backup rotates the files under the drill.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BootMarker, HostVmConfig } from '../core/config.ts';
import { asHavenError, type HavenError } from '../core/errors.ts';
import { exec } from '../core/exec.ts';
import type { Logger } from '../core/log.ts';
import { ensureRunDir } from '../core/paths.ts';
import { FileFollower, TextMatcher, waitForBootMarker } from '../recovery/index.ts';
import {
  type BackupGeneration,
  type HostHold,
  HostStore,
  type RescueGeneration,
} from '../store/host/index.ts';
import { drillRecord } from '../store/types.ts';
import { createTransient, destroyDomain, domainState, type Virsh, VirtError } from '../virt/index.ts';
import { type DrillDisk, drillDomainXml, nextDiskName, rescueBootFrom } from './drill-vm.ts';
import { hostError } from './errors.ts';
import { checkGenerations, chooseBackup, rescueMissing } from './generation.ts';
import { IsoImage } from './iso9660.ts';
import { makeBackupMedium } from './medium.ts';

export interface HostDrillOptions {
  /** The store at this DR site (its root and descriptor). */
  store: { location: string; descriptor: { id: string; digest: 'blake3' | 'sha256' } };
  host: string;
  /** Backup generation (1 = newest). */
  generation?: number;
  marker: BootMarker;
  /** From the recovered system's start until its marker. */
  timeoutMs: number;
  /** The rescue system's boot and `rear recover`. */
  recoveryTimeoutMs: number;
  vm: HostVmConfig;
  virsh: Virsh;
  runDir: string;
  log: Logger;
  /** How long to wait for a backup of the host to finish storing (default 10 min). */
  lockWaitMs?: number;
  signal?: AbortSignal;
}

export interface HostDrillResult {
  host: string;
  store: string;
  backup?: { id: string; seq: number; takenAt: string };
  rescue?: { id: string; seq: number };
  result: 'pass' | 'fail';
  /** Seconds from the drill's start to the marker (pass) or to the failure. */
  seconds: number;
  /** Where the time went: preparing (digests, medium, disks), rescue boot and recover, boot. */
  phases: { prepare?: number; recover?: number; boot?: number };
  detail?: string;
  error?: ReturnType<HavenError['toJSON']>;
  consoleTail?: string;
  recorded: boolean;
}

export function hostDrillDedupKey(storeId: string, host: string): string {
  return `host-drill:${storeId}:${host}`;
}

/** What ReaR's unattended mode prints (skel/default/etc/scripts/system-setup, ReaR 2.7). */
const RECOVERED = "'rear recover' finished successfully";
const NOT_RECOVERED = "'rear recover' failed";

function virtType(vm: HostVmConfig): 'kvm' | 'qemu' {
  return vm.virtType ?? (existsSync('/dev/kvm') ? 'kvm' : 'qemu');
}

interface Chosen {
  backup: BackupGeneration;
  rescue: RescueGeneration;
}

async function choose(hosts: HostStore, host: string, seq: number): Promise<Chosen> {
  const { backup, rescue } = await chooseBackup(hosts, host, seq);
  if (!rescue) {
    throw rescueMissing(
      host,
      seq,
      'Drill a newer backup, or run `haven host backup` to store media and archive together.',
    );
  }
  return { backup, rescue };
}

/** Both files must match their digests before anything boots: damage shows here, not as a hang. */
function checkFiles(hosts: HostStore, host: string, c: Chosen, signal?: AbortSignal): Promise<void> {
  return checkGenerations(
    hosts,
    host,
    [c.rescue, c.backup],
    `Drill an older generation (--generation), and run \`haven verify --store ${hosts.location}\`; the next \`haven host backup\` stores new files.`,
    signal ? { signal } : {},
  );
}

/** Follows the rescue console until ReaR reports and the VM ends at its reboot. */
async function waitForRecovery(o: HostDrillOptions, domain: string, consoleLog: string): Promise<void> {
  const follower = new FileFollower(consoleLog);
  const ok = new TextMatcher(RECOVERED);
  const bad = new TextMatcher(NOT_RECOVERED);
  let recovered = false;
  const deadline = Date.now() + o.recoveryTimeoutMs;
  for (;;) {
    let failed = false;
    await follower.read((piece) => {
      if (ok.push(piece)) recovered = true;
      if (bad.push(piece)) failed = true;
    });
    const tail = () => ({ consoleTail: follower.tail });
    if (failed) {
      throw hostError(
        'HOST_DRILL_RECOVER_FAILED',
        'integrity',
        `rear recover failed in the drill of ${o.host}`,
        {
          hint: 'The console tail in the report shows where ReaR stopped; the same would stop a real recovery.',
          details: tail(),
        },
      );
    }
    const state = await domainState(o.virsh, domain).then(
      (s) => s.state as string,
      (e) => {
        if (e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND') return 'gone';
        throw e;
      },
    );
    if (state === 'gone' || state === 'shut off') {
      await follower.read((piece) => {
        if (ok.push(piece)) recovered = true;
      });
      if (recovered) return;
      throw hostError(
        'HOST_DRILL_RECOVER_FAILED',
        'integrity',
        `the rescue system of ${o.host} stopped before ReaR recovered it`,
        {
          details: tail(),
        },
      );
    }
    o.signal?.throwIfAborted();
    if (Date.now() > deadline) {
      throw hostError(
        'HOST_DRILL_TIMEOUT',
        'integrity',
        `rear recover did not finish within ${Math.round(o.recoveryTimeoutMs / 1000)} s in the drill of ${o.host}`,
        {
          hint: 'Raise recovery_timeout if the machine is slow; else the console tail shows where it stopped.',
          details: tail(),
        },
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function stop(virsh: Virsh, domain: string, log: Logger): Promise<void> {
  await destroyDomain(virsh, domain).catch((e) => {
    if (!(e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND'))
      log.warn('could not stop a drill VM', { domain, err: e });
  });
}

export async function drillHost(o: HostDrillOptions): Promise<HostDrillResult> {
  const t0 = Date.now();
  const id = randomBytes(4).toString('hex');
  const log = o.log.child({ host: o.host, drill: id });
  const result: HostDrillResult = {
    host: o.host,
    store: o.store.location,
    result: 'fail',
    seconds: 0,
    phases: {},
    recorded: false,
  };
  const hosts = new HostStore(o.store.location, o.store.descriptor, { log });
  const domains = [`${o.host}-hostdrill-${id}`, `${o.host}-hostdrill-${id}-boot`];
  let hold: HostHold | undefined;
  let chosen: Chosen | undefined;
  const dir = join(ensureRunDir(o.runDir, 'host-drills'), `${o.host.slice(0, 40)}-${id}`);
  try {
    hold = await hosts.hold(o.host, 'host drill', o.lockWaitMs ?? 600_000);
    chosen = await choose(hosts, o.host, o.generation ?? 1);
    result.backup = { id: chosen.backup.id, seq: chosen.backup.seq, takenAt: chosen.backup.takenAt };
    result.rescue = { id: chosen.rescue.id, seq: chosen.rescue.seq };
    await checkFiles(hosts, o.host, chosen, o.signal);
    // QEMU, running as its own user, writes the consoles and reads the disks here.
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o1777);
    const disks = await prepare(o, hosts, chosen, dir);
    result.phases.prepare = (Date.now() - t0) / 1000;
    const t1 = Date.now();
    log.info('booting the stored rescue media in the drill VM', {
      rescue: chosen.rescue.seq,
      backup: chosen.backup.seq,
    });
    await createTransient(
      o.virsh,
      vmXml(o, chosen, domains[0]!, dir, disks.withMedium, await rescueOf(hosts, o.host, chosen, dir)),
    );
    await waitForRecovery(o, domains[0]!, join(dir, 'rescue-console.log'));
    await stop(o.virsh, domains[0]!, log);
    result.phases.recover = (Date.now() - t1) / 1000;
    const t2 = Date.now();
    log.info('rear recover finished; booting the recovered disks');
    await createTransient(o.virsh, vmXml(o, chosen, domains[1]!, dir, disks.host));
    const seen = await waitForBootMarker({
      virsh: o.virsh,
      domain: domains[1]!,
      marker: o.marker,
      consoleLog: join(dir, 'boot-console.log'),
      timeoutMs: o.timeoutMs,
      signal: o.signal,
    });
    result.phases.boot = (Date.now() - t2) / 1000;
    result.seconds = (Date.now() - t0) / 1000;
    if (seen.seen) {
      result.result = 'pass';
      result.detail =
        'serial' in o.marker
          ? `the recovered system showed ${JSON.stringify(o.marker.serial)}`
          : 'the recovered system’s guest agent answered';
    } else {
      result.consoleTail = seen.consoleTail;
      throw hostError('HOST_DRILL_NO_MARKER', 'integrity', `${o.host} was recovered but ${seen.reason}`, {
        hint: 'The recovered system did not show its marker: the console tail in the report shows how far it came.',
      });
    }
  } catch (e) {
    const err = asHavenError(e);
    result.seconds = (Date.now() - t0) / 1000;
    result.detail = err.message;
    result.error = err.toJSON();
    result.consoleTail ??= (err.details?.consoleTail as string | undefined) ?? undefined;
    log.error(`host drill failed: ${err.message}`, { code: err.code });
  } finally {
    for (const d of domains) await stop(o.virsh, d, log);
    await rm(dir, { recursive: true, force: true }).catch((e) =>
      log.warn('could not remove the drill directory', { dir, err: e }),
    );
    if (chosen) await record(hosts, o.host, chosen.backup, result, t0, log);
    await hold?.release();
  }
  return result;
}

async function rescueOf(hosts: HostStore, host: string, c: Chosen, dir: string) {
  const iso = await IsoImage.open(hosts.filePath(host, c.rescue));
  try {
    return await rescueBootFrom(iso, dir);
  } finally {
    await iso.close();
  }
}

/** Blank disks as the host's, and the backup medium after them. */
async function prepare(o: HostDrillOptions, hosts: HostStore, c: Chosen, dir: string) {
  const host: DrillDisk[] = [];
  for (const d of c.rescue.facts.disks) {
    const path = join(dir, `disk-${d.name}.qcow2`);
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', path, String(d.size)]);
    host.push({ target: d.name, path, format: 'qcow2' });
  }
  const medium = join(dir, 'backup-medium.img');
  await makeBackupMedium(hosts.filePath(o.host, c.backup), medium, dir);
  const bus = host[0]
    ? host[0].target.startsWith('sd')
      ? 'scsi'
      : host[0].target.startsWith('hd')
        ? 'ide'
        : 'virtio'
    : 'virtio';
  const withMedium = [
    ...host,
    { target: nextDiskName(host, bus), path: medium, format: 'raw' as const, readonly: true },
  ];
  return { host, withMedium };
}

function vmXml(
  o: HostDrillOptions,
  c: Chosen,
  name: string,
  dir: string,
  disks: DrillDisk[],
  rescue?: Awaited<ReturnType<typeof rescueBootFrom>>,
): string {
  return drillDomainXml({
    name,
    uuid: randomUUID(),
    vm: { ...o.vm, virtType: virtType(o.vm) },
    firmware: c.rescue.facts.firmware,
    disks,
    console: join(dir, rescue ? 'rescue-console.log' : 'boot-console.log'),
    nvram: join(dir, 'nvram.fd'),
    ...(rescue ? { rescue } : {}),
  });
}

async function record(
  hosts: HostStore,
  host: string,
  backup: BackupGeneration,
  r: HostDrillResult,
  t0: number,
  log: Logger,
): Promise<void> {
  const test = drillRecord(t0, r);
  try {
    await hosts.recordTest(host, 'backup', backup.id, test);
    r.recorded = true;
  } catch (e) {
    log.error('could not record the drill in the host manifest', { err: asHavenError(e) });
  }
}
