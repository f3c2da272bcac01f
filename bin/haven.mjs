#!/usr/bin/env node
// Entry point of the `haven` command. An installed package (npm or .deb, docs/install.md) holds
// the compiled tree only (dist/, from scripts/build) and always runs it. In a clone of the
// repository the source tree is what runs: dist/ only while it is newer than every source file
// (it starts several times faster, and a receiver is spawned for every replication), the
// TypeScript through tsx otherwise, so an edit, a pull or a checkout can never run stale code
// (docs/decisions.md). HAVEN_FROM_SOURCE=1 forces the TypeScript in a clone.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Newest mtime of `dir`'s files and directories (a deleted or renamed file changes its directory). */
function newestIn(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestIn(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function builtIsFresh() {
  if (process.env.HAVEN_FROM_SOURCE === '1') return false;
  try {
    const built = statSync(join(root, 'dist', '.build-stamp')).mtimeMs;
    const inputs = ['package.json', 'tsconfig.json', 'tsconfig.build.json'].map(
      (f) => statSync(join(root, f)).mtimeMs,
    );
    return built >= Math.max(newestIn(join(root, 'src')), ...inputs);
  } catch {
    return false;
  }
}

// Crash tests only: a receiver lost as soon as it starts, before it loads anything
// (docs/stream-protocol.md, "Test hooks").
if (process.env.HAVEN_TEST_FAULT === 'receiver-at-start' && process.argv.includes('receive')) {
  process.kill(process.pid, 'SIGKILL');
}

// An installed package has no TypeScript (and no tsx): the compiled tree is all there is.
const installed = !existsSync(join(root, 'src', 'cli', 'main.ts'));
let main;
if (installed || builtIsFresh()) {
  // The command's own bundle, compiled from V8's code cache (src/cli/start.ts); the whole CLI for
  // help, --version, `haven completion` and names it does not know.
  const { startCompiled } = createRequire(import.meta.url)('../dist/cli/start.cjs');
  main = startCompiled(process.argv, join(root, 'dist', 'cli', 'run'));
  main ??= (await import('../dist/cli/main.js')).main;
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
process.exitCode = await main(process.argv);
