/** "haven/<package version>": how each end names itself in HELLO and WELCOME (for logs). */
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export const SOFTWARE = `haven/${pkg.version}`;
