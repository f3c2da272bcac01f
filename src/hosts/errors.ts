/**
 * Errors of host recovery. Every code is stable and listed in error-codes.ts (and so
 * docs/errors.md) with what to do about it. A failing ReaR run carries the end of ReaR's own log
 * in its message and details: that is where ReaR says why.
 */
import { HavenError, type HavenErrorOptions, type KindOf } from '../core/errors.ts';
import type { StoreCode } from '../store/errors.ts';
import type { HOST_CODES } from './error-codes.ts';

export type HostCode = keyof typeof HOST_CODES;

export class HostError<C extends HostCode | StoreCode = HostCode | StoreCode> extends HavenError<C> {}

/** Host codes, and the store's host-file codes a drill reports as they are (a damaged archive). */
export function hostError<C extends HostCode | StoreCode>(
  code: C,
  kind: KindOf<C>,
  message: string,
  o: Omit<HavenErrorOptions, 'kind'> = {},
): HostError<C> {
  return new HostError(code, message, { kind, ...o });
}

export function unknownHost(name: string, configured: string[]): HostError {
  const known = configured.length
    ? `Configured hosts: ${configured.sort().join(', ')}.`
    : 'No host is configured.';
  return hostError(
    'HOST_NOT_CONFIGURED',
    'not-found',
    `no host named ${JSON.stringify(name)} in the configuration`,
    {
      hint: `${known} Hosts are configured under hosts: in haven.yaml (docs/configuration.md).`,
      details: { host: name, configured },
    },
  );
}

/** A ReaR command failed; `logTail` is the end of ReaR's log on the host. */
export function rearFailed(
  host: string,
  what: string,
  exitCode: number,
  output: string,
  logTail: string,
): HostError {
  const said = output
    .split('\n')
    .filter((l) => /ERROR|Error|error:/.test(l))
    .slice(-3)
    .join('\n  ');
  const tail = logTail.trim() ? `\nReaR's log on ${host} ends with:\n${indent(logTail)}` : '';
  return hostError(
    'HOST_REAR_FAILED',
    'io',
    `rear ${what} failed on ${host} (exit ${exitCode})${said ? `:\n  ${said}` : ''}${tail}`,
    {
      hint: `Read ReaR's log on ${host} (/var/log/rear/), fix what it names, then run \`haven host backup ${host}\` again; nothing stored was changed.`,
      details: { host, command: what, exitCode, logTail },
    },
  );
}

export function indent(text: string, prefix = '    '): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `${prefix}${l}`)
    .join('\n');
}
