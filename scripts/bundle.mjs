// Bundles the CLI into dist/cli/ for scripts/build: one entry per command module (main.ts loads
// only the module of the command it runs) plus shared chunks. The pure-JavaScript packages a
// replication loads are bundled too: zod's ~95 ES modules cost 70–100 ms to load, about 35 ms as
// one file, and commander, yaml, xmldom and the table and progress packages are dozens of small
// CommonJS files each; every replication starts two processes (docs/decisions.md). Native addons
// and the daemon's server packages stay in node_modules.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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
// zod re-exports all of its ~50 message locales (`z.locales`, about 370 KiB: half of the zod code
// every command loads). Haven uses English only, zod's default, so the bundle's locale index holds
// English alone.
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes(`${join('node_modules', 'zod')}/`)
        ? { path: join(dirname(args.importer), '..', 'locales', 'index.js'), namespace: 'zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      contents: "export { default as en } from './en.js';",
      resolveDir: dirname(args.path),
    }));
  },
};
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
  plugins: [zodEnglishOnly],
  sourcemap: true,
  // Bundled CommonJS packages call require() for Node's built-ins; an ES module has none.
  banner: {
    js: "import { createRequire as __havenCreateRequire } from 'node:module'; const require = __havenCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});

// The compiled start (src/cli/start.ts) and one CommonJS bundle per command module: main.ts and
// that module in one file, which start.ts compiles from V8's code cache (docs/decisions.md, "One
// bundle per command, compiled from a code cache"). Haven's own modules have no side effects on
// import, so what a command does not use is left out of its bundle.
const COMMAND_ENTRY = 'haven-command:';
const commandEntry = {
  name: 'haven-command-entry',
  setup(b) {
    b.onResolve({ filter: new RegExp(`^${COMMAND_ENTRY}`) }, (args) => ({
      path: args.path.slice(COMMAND_ENTRY.length),
      namespace: 'haven-command',
    }));
    b.onLoad({ filter: /.*/, namespace: 'haven-command' }, (args) => ({
      contents: `export { default as register } from './src/cli/commands/${args.path}.ts';
export { main } from './src/cli/main.ts';`,
      resolveDir: root,
    }));
    b.onResolve({ filter: /\.ts$/ }, (args) =>
      args.path.startsWith('.') ? { path: join(args.resolveDir, args.path), sideEffects: false } : undefined,
    );
  },
};
const cjs = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external,
  logLevel: 'warning',
};
await build({
  ...cjs,
  entryPoints: [join(root, 'src/cli/start.ts')],
  outfile: join(root, 'dist/cli/start.cjs'),
});
await build({
  ...cjs,
  entryPoints: Object.fromEntries(
    commands
      // `haven completion` loads every command module (the ES build's) for their flags: it has no
      // bundle of its own, so that no bundle imports an ES module.
      .filter((f) => /^export default /m.test(readFileSync(f, 'utf8')) && basename(f) !== 'completion.ts')
      .map((f) => [basename(f, '.ts'), `${COMMAND_ENTRY}${basename(f, '.ts')}`]),
  ),
  outdir: join(root, 'dist/cli/run'),
  outExtension: { '.js': '.cjs' },
  plugins: [zodEnglishOnly, commandEntry],
  // import() of a package (nodemailer, loaded when a mail is sent) becomes require(): a script
  // compiled by vm (src/cli/start.ts) has no ES module loader of its own.
  supported: { 'dynamic-import': false },
  // Modules find files relative to their own URL (main.ts its command modules, package-root.ts the
  // package). In a command bundle that URL is dist/cli/main.js's, so that they find what they find
  // from the ES module build.
  define: { 'import.meta.url': '__havenModuleUrl' },
  banner: {
    js: "const __havenModuleUrl = require('node:url').pathToFileURL(require('node:path').join(__dirname, '..', 'main.js')).href;",
  },
});
