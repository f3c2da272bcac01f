/**
 * The checks every store makes of a delta's description before anything is staged (Store.openDelta):
 * safe names (core/names.ts), 1 to 65535 disks with sizes, no disk name twice, `copies` from 1 to
 * MAX_COPIES, a known mode, and the points in time as short strings.
 */
import { checkName } from '../../core/names.ts';
import { storeError } from '../errors.ts';
import type { DeltaMeta } from '../types.ts';
import { findNameCollision } from './names.ts';

export const MAX_COPIES = 100;

export function validateDeltaMeta(meta: DeltaMeta): void {
  checkName('server', meta.server);
  checkName('job', meta.job);
  const bad = (what: string, details?: Record<string, unknown>) =>
    storeError('STORE_BAD_META', 'usage', `invalid delta description: ${what}`, {
      hint: 'The sender described the server inconsistently; check its configuration.',
      details,
    });
  if (!Array.isArray(meta.disks) || meta.disks.length === 0 || meta.disks.length > 0xffff) {
    throw bad('a server needs 1 to 65535 disks');
  }
  for (const d of meta.disks) {
    checkName('disk', d.name);
    if (!Number.isSafeInteger(d.size) || d.size <= 0)
      throw bad(`disk ${d.name} has size ${d.size}`, { disk: d.name });
  }
  const collision = findNameCollision({ server: meta.server, disks: meta.disks.map((d) => d.name) }, []);
  if (collision) {
    throw storeError(
      'STORE_NAME_COLLISION',
      'conflict',
      `disk name ${collision.disk} appears twice in ${meta.server}`,
      {
        hint: 'Two disks of one server must have different store disk names (file base names or LV names).',
        details: collision,
      },
    );
  }
  if (!Number.isInteger(meta.copies) || meta.copies < 1 || meta.copies > MAX_COPIES) {
    throw storeError('STORE_BAD_COPIES', 'usage', `copies must be 1 to ${MAX_COPIES}, got ${meta.copies}`, {
      hint: 'Set copies in the job to a whole number from 1 to 100.',
    });
  }
  if (!['full', 'incremental', 'resync'].includes(meta.mode)) throw bad(`mode ${meta.mode}`);
  for (const [k, v] of [
    ['pointInTime', meta.pointInTime],
    ['takenAt', meta.takenAt],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0 || v.length > 256)
      throw bad(`${k} must be a non-empty string`);
  }
  if (meta.baseGenerationId !== null && typeof meta.baseGenerationId !== 'string')
    throw bad('baseGenerationId');
}
