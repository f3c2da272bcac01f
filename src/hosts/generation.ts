/**
 * Which stored files a reader of a host's backup uses (`haven host drill`, `haven host medium`):
 * the backup generation by number (1 = newest), the rescue media it names, and both checked
 * against their digests before anything is made from them, so damage shows as the store's
 * stable code rather than as a recovery that fails on the worst day.
 */
import {
  type BackupGeneration,
  checkHostFile,
  type HostGeneration,
  type HostStore,
  hostNotFound,
  type RescueGeneration,
} from '../store/host/index.ts';
import { type HostError, hostError } from './errors.ts';

export interface ChosenBackup {
  backup: BackupGeneration;
  /** The rescue media the archive names; absent when the store no longer holds them. */
  rescue?: RescueGeneration;
}

export async function chooseBackup(hosts: HostStore, host: string, seq: number): Promise<ChosenBackup> {
  const m = await hosts.manifest(host);
  if (!m) throw hostNotFound(host, hosts.location);
  const backup = m.backup[seq - 1];
  if (!backup) {
    throw hostError(
      'HOST_GENERATION_NOT_FOUND',
      'not-found',
      `host ${host} has no backup _${seq} in ${hosts.location}`,
      {
        hint: `It holds ${m.backup.length} backup(s); list them with \`haven images ${host} --store ${hosts.location}\`.`,
      },
    );
  }
  const rescue = m.rescue.find((r) => r.id === backup.rescueId);
  return rescue ? { backup, rescue } : { backup };
}

export function rescueMissing(host: string, seq: number, hint: string): HostError {
  return hostError(
    'STORE_HOST_RESCUE_MISSING',
    'integrity',
    `backup _${seq} of ${host} names rescue media the store no longer holds`,
    { hint },
  );
}

/** Every file must match its digest; the first that does not is thrown with the store's code. */
export async function checkGenerations(
  hosts: HostStore,
  host: string,
  generations: HostGeneration[],
  hint: string,
  o: { signal?: AbortSignal; onBytes?: (n: number) => void } = {},
): Promise<void> {
  for (const g of generations) {
    const problems = await checkHostFile(hosts, host, g, {
      signal: o.signal,
      ...(o.onBytes ? { onProgress: o.onBytes } : {}),
    });
    if (problems.length > 0) {
      const p = problems[0]!;
      throw hostError(p.code, 'integrity', `${host}: ${p.message}`, {
        hint,
        details: { file: p.file, generationId: g.id },
      });
    }
  }
}
