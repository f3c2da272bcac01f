/**
 * What the continuous tests (issue 15) share: the store as a test looks into it while Haven
 * writes it, and the two-disk guest running the sequence-numbered writer's checker at boot.
 */
import type { TestContext } from 'node:test';
import { type FsStore, openFsStore } from '../../src/store/index.ts';
import type { JournalPoint, ServerManifest } from '../../src/store/types.ts';
import { createTestGuest, type TestGuest } from '../fixtures/guest/index.ts';
import { waitFor } from './jobs-helpers.ts';
import { destroyDomainsLike } from './recovery-helpers.ts';

/** `fn` on the store, opened for it and closed after; null while there is no store yet. */
export async function inStore<T>(store: string, fn: (s: FsStore) => Promise<T>): Promise<T | null> {
  const s = await openFsStore(store).catch(() => null);
  if (!s) return null;
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

export async function newestPoint(store: string, server: string): Promise<JournalPoint | undefined> {
  return (await inStore(store, (s) => s.journalInfo(server)))?.newest ?? undefined;
}

export async function storedManifest(store: string, server: string): Promise<ServerManifest | null> {
  return inStore(store, (s) => s.manifest(server));
}

/** Waits for a point taken more than `marginMs` after `after` (ms since the epoch). */
export function pointAfter(
  store: string,
  server: string,
  after: number,
  what: string,
  o: { marginMs?: number; timeoutMs?: number } = {},
): Promise<JournalPoint> {
  return waitFor(
    what,
    async () => {
      const n = await newestPoint(store, server);
      return n && Date.parse(n.takenAt) > after + (o.marginMs ?? 200) ? n : undefined;
    },
    o.timeoutMs ?? 60_000,
    500,
  );
}

/**
 * A test guest with two disks of `sizeMiB` whose copies check the writer's prefix when they
 * boot (workload seq-check); destroyed, with every domain named after it, when the test ends.
 */
export async function seqGuest(t: TestContext, prefix: string, sizeMiB: number): Promise<TestGuest> {
  const guest = await createTestGuest(t, { prefix, disks: [{ sizeMiB }, { sizeMiB }] });
  t.after(() => destroyDomainsLike(guest.name));
  await guest.setWorkload({ name: 'seq-check', disks: ['vda', 'vdb'] });
  return guest;
}
