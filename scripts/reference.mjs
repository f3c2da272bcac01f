// Writes dist/man/man1/*.1 and dist/completion/{haven.bash,_haven} from the program scripts/build
// has just bundled (src/cli/reference/): generated at every build, never committed, so a page or
// a completion cannot describe flags other than the ones this build runs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const { commandTree } = await import(join(root, 'dist/cli/main.js'));
const { writeReference } = await import(join(root, 'dist/cli/reference/index.js'));
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
await writeReference(await commandTree(), join(root, 'dist'), version);
