// Bundles the CLI into dist/cli/ for scripts/build: one entry per command module (main.ts loads
// only the module of the command it runs) plus shared chunks. The pure-JavaScript packages a
// replication loads are bundled too: zod's ~95 ES modules cost 70–100 ms to load, about 35 ms as
// one file, and commander, yaml, xmldom and the table and progress packages are dozens of small
// CommonJS files each; every replication starts two processes (docs/decisions.md). Native addons
// and the daemon's server packages stay in node_modules.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const BUNDLED = new Set([
  'zod',
  'commander',
  'yaml',
  '@xmldom/xmldom',
  'croner',
  'cli-table3',
  'cli-progress',
]);
const external = Object.keys(pkg.dependencies).filter((d) => !BUNDLED.has(d));
const commands = readdirSync(join(root, 'src/cli/commands'))
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
  .map((f) => join(root, 'src/cli/commands', f));

await build({
  // reference/index.ts: the man page and completion generator scripts/reference.mjs runs.
  entryPoints: [join(root, 'src/cli/main.ts'), join(root, 'src/cli/reference/index.ts'), ...commands],
  outbase: join(root, 'src/cli'),
  outdir: join(root, 'dist/cli'),
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  sourcemap: true,
  // Bundled CommonJS packages call require() for Node's built-ins; an ES module has none.
  banner: {
    js: "import { createRequire as __havenCreateRequire } from 'node:module'; const require = __havenCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
