/**
 * Test support only: a scratch directory under $HAVEN_TEST_ROOT (short paths: unix sockets in it
 * must stay under 107 bytes), removed when the test ends.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';

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

/**
 * Scratch directories for one test file: each call of the returned function makes one, and all
 * are removed when the file's tests have ended (for helpers called without a test context).
 */
export function scratchDirs(prefix: string): () => string {
  const made: string[] = [];
  after(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(testRoot(), prefix));
    made.push(dir);
    return dir;
  };
}
