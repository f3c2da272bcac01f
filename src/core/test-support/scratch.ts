/**
 * Test support only: a scratch directory under $HAVEN_TEST_ROOT (short paths: unix sockets in it
 * must stay under 107 bytes), removed when the test ends.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export function testRoot(): string {
  const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
  mkdirSync(root, { recursive: true });
  return root;
}

/** A new directory named `<prefix>XXXXXX`; with a test context, removed after it. */
export function scratchDir(prefix: string, t?: TestContext): string {
  const dir = mkdtempSync(join(testRoot(), prefix));
  t?.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
