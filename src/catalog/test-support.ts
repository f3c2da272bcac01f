/** Test support only: a catalog file of its own for one test, closed and removed after it. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { scratchDir } from '../core/test-support/scratch.ts';
import { type Catalog, openCatalog } from './catalog.ts';

export function scratchCatalog(t: TestContext, prefix: string): Catalog {
  const dir = scratchDir(prefix);
  const c = openCatalog(join(dir, 'catalog.sqlite'));
  t.after(() => {
    c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return c;
}
