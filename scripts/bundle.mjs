// Bundles the CLI into dist/cli/ for scripts/build: one entry per command module (main.ts loads
// only the module of the command it runs) plus shared chunks. Third-party packages stay in
// node_modules, except zod: its ~95 ES modules cost 70–100 ms to load, about 35 ms as one file,
// and every replication starts two processes that load it (docs/decisions.md).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const BUNDLED = new Set(['zod']);
const external = Object.keys(pkg.dependencies).filter((d) => !BUNDLED.has(d));
const commands = readdirSync(join(root, 'src/cli/commands'))
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
  .map((f) => join(root, 'src/cli/commands', f));

await build({
  entryPoints: [join(root, 'src/cli/main.ts'), ...commands],
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
  logLevel: 'warning',
});
