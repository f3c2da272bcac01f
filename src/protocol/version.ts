/** "haven/<package version>": how each end names itself in HELLO and WELCOME (for logs). */
import { readFileSync } from 'node:fs';
import { installPath } from '../core/package-root.ts';

const pkg = JSON.parse(readFileSync(installPath('package.json'), 'utf8')) as {
  version: string;
};

export const SOFTWARE = `haven/${pkg.version}`;
