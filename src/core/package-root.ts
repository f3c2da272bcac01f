/**
 * The directory of Haven's package.json, found by walking up from this module. Paths to files
 * of the installation (package.json, bin/haven.mjs, the dashboard's static files) start here,
 * because a module's own location differs between the source tree (src/<component>/) and the
 * bundle scripts/build makes (dist/cli/, dist/cli/commands/ or dist/cli/chunks/).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'haven') {
      return dir;
    }
    if (dirname(dir) === dir) throw new Error(`no package.json of haven above ${from}`);
  }
}

export const PACKAGE_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

/** A path inside the installation, e.g. `installPath('bin', 'haven.mjs')`. */
export function installPath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}

let version: string | undefined;

/** The `version` of Haven's package.json. */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(installPath('package.json'), 'utf8')) as { version: string }).version;
  return version;
}
