/**
 * A bench's scratch area and its test guests: a fresh work directory under the bench root, the
 * guest fixture loaded with its guests kept there too, and one cleanup for everything the bench
 * made (guests first, then the directory), run on Ctrl-C as well.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { createTestGuest as CreateTestGuest } from '../../test/fixtures/guest/index.ts';
import { BENCH_ROOT } from './fixtures.ts';

export interface GuestFleet {
  work: string;
  /** Makes a test guest whose removal the fleet's cleanup owns. */
  guest: (options: Parameters<typeof CreateTestGuest>[1]) => ReturnType<typeof CreateTestGuest>;
  /** Runs `fn` first at cleanup (stop what uses the guests). */
  onCleanup: (fn: () => unknown) => void;
  cleanup: () => Promise<void>;
}

export async function guestFleet(name: string): Promise<GuestFleet> {
  const work = join(BENCH_ROOT, name);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  process.env.HAVEN_TEST_ROOT ??= join(BENCH_ROOT, 'guests');
  mkdirSync(process.env.HAVEN_TEST_ROOT, { recursive: true });
  // Loaded only now: the fixture reads HAVEN_TEST_ROOT when it is first imported.
  const { createTestGuest } = await import('../../test/fixtures/guest/index.ts');
  const after: Array<() => unknown> = [];
  const hook = { after: (fn: () => unknown) => void after.push(fn) };
  const cleanup = async () => {
    for (const fn of after.reverse()) await Promise.resolve(fn()).catch(() => {});
    after.length = 0;
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  return {
    work,
    guest: (options) => createTestGuest(hook, options),
    onCleanup: (fn) => void after.push(fn),
    cleanup,
  };
}
