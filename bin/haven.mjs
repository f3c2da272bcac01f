#!/usr/bin/env node
// Entry point of the `haven` command. The source tree is what runs: TypeScript through tsx, so
// a target reached over SSH runs exactly the code that was tested. scripts/build compiles the
// same tree to dist/, which starts several times faster (a receiver is spawned for every
// replication); it is used only while it is newer than every source file, so an edit, a pull or
// a checkout can never run stale code. HAVEN_FROM_SOURCE=1 forces the TypeScript.
import { readdirSync, statSync } from 'node:fs';
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

let main;
if (builtIsFresh()) {
  ({ main } = await import('../dist/cli/main.js'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
process.exitCode = await main(process.argv);
