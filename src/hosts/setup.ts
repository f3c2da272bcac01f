/**
 * `haven host setup <host>`: checks that ReaR and what it needs are installed (and installs them
 * with `--install` where the host has package access), then writes Haven's ReaR configuration
 * (rear-config.ts). Says exactly what is missing, with the package of each.
 */
import type { HavenConfig, HostConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import { hostError, indent } from './errors.ts';
import { type Preflight, Rear } from './rear.ts';
import { backupExcludes, REAR_CONFIG_PATH, rearConfig } from './rear-config.ts';
import { HostShell } from './shell.ts';

export function hostShell(host: HostConfig, log: Logger): HostShell {
  return new HostShell(host.name, host.endpoint, host.sshOptions, log);
}

function missingError(host: string, p: Preflight, installTried?: string): Error {
  const packages = [...new Set(p.missing.map((m) => m.pkg))];
  const list = p.missing.map((m) => (m.pkg === m.what ? m.what : `${m.what} (package ${m.pkg})`)).join(', ');
  const how = p.apt
    ? `Install them on ${host}: apt-get install ${packages.join(' ')}; or run \`haven host setup ${host} --install\` where the host has package access.`
    : `Install ${packages.join(' ')} with the host's package manager (ReaR 2.7 or newer).`;
  return hostError(
    'HOST_REAR_MISSING',
    'unavailable',
    `${p.rearVersion ? 'ReaR is installed' : 'ReaR is not installed'} on ${host}, and ${p.rearVersion ? 'it lacks' : 'missing are'}: ${list}${installTried ? `\ninstalling failed:\n${indent(installTried)}` : ''}`,
    { hint: how, details: { host, missing: p.missing, packages, rearVersion: p.rearVersion } },
  );
}

/** Throws unless ReaR is complete on the host and Haven's configuration is there. */
export async function requireReady(rear: Rear, host: string): Promise<Preflight> {
  const p = await rear.preflight();
  if (p.missing.length > 0) throw missingError(host, p);
  if (!p.configPresent) {
    throw hostError(
      'HOST_NOT_SET_UP',
      'refused',
      `Haven's ReaR configuration is not on ${host} (${REAR_CONFIG_PATH})`,
      {
        hint: `Run \`haven host setup ${host}\` first.`,
        details: { host },
      },
    );
  }
  return p;
}

export interface HostSetupReport {
  host: string;
  where: string;
  rearVersion: string;
  installed: string[];
  /** The configuration file was written (or would be, in a dry run). */
  configWritten: boolean;
  configPath: string;
  excludes: string[];
  dryRun: boolean;
}

export async function setupHost(o: {
  host: HostConfig;
  config: HavenConfig;
  install?: boolean;
  dryRun?: boolean;
  log: Logger;
}): Promise<HostSetupReport> {
  const rear = new Rear(hostShell(o.host, o.log));
  let p = await rear.preflight();
  const installed: string[] = [];
  if (p.missing.length > 0) {
    if (!o.install || !p.apt || o.dryRun) throw missingError(o.host.name, p);
    const packages = [...new Set(p.missing.map((m) => m.pkg))];
    o.log.info(`installing ${packages.join(' ')}`, { host: o.host.name });
    const r = await rear.install(packages);
    p = await rear.preflight();
    if (p.missing.length > 0) throw missingError(o.host.name, p, r.stdout || r.stderr);
    installed.push(...packages);
  }
  const detected = await rear.detect(o.config.cache.signature);
  const wanted = rearConfig(o.host, detected, o.config.cache.signature);
  const configWritten = (await rear.readConfig()) !== wanted;
  if (configWritten && !o.dryRun) await rear.writeConfig(wanted);
  return {
    host: o.host.name,
    where: rear.shell.where,
    rearVersion: p.rearVersion ?? 'unknown',
    installed,
    configWritten,
    configPath: REAR_CONFIG_PATH,
    excludes: backupExcludes(o.host, detected),
    dryRun: o.dryRun === true,
  };
}
