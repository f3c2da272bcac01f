/**
 * The compiled start (start.ts): which command a command line names, and a bundle loaded from
 * V8's code cache. The cache is written as a process exits, so each load runs in a process of its
 * own (node with tsx, loading start.ts), as `haven` does.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import { commandModuleName } from './command-name.ts';
import { codeCacheDir, startCompiled } from './start.ts';

const START = join(import.meta.dirname, 'start.ts');

test('the command module a command line names: aliases, global options and their values skipped', () => {
  const name = (...words: string[]) => commandModuleName(['node', 'haven', ...words]);
  assert.equal(name('status', '--json'), 'status');
  assert.equal(name('-c', 'status', 'images'), 'images', 'the value of -c is not the command');
  assert.equal(name('--config', '/etc/x.yaml', '-v', 'protect', 'web1'), 'protect');
  assert.equal(name('--log-file', 'l', 'job', 'run'), 'job');
  assert.equal(name('priority', 'web1', '3'), 'activate', 'priority lives in the activate module');
  assert.equal(name('failback-receive'), 'failback');
  assert.equal(name('--version'), undefined);
  assert.equal(name(), undefined);
  assert.equal(name('../etc/passwd'), undefined, 'only a plain name can name a module');
  assert.equal(name('Status'), undefined);
});

test('the code cache lives in the user cache directory, or where HAVEN_CODE_CACHE says, or nowhere', () => {
  assert.equal(codeCacheDir({ HAVEN_CODE_CACHE: 'off', XDG_CACHE_HOME: '/c' }), undefined);
  assert.equal(codeCacheDir({ HAVEN_CODE_CACHE: '/x/y' }), '/x/y');
  assert.equal(codeCacheDir({ XDG_CACHE_HOME: '/c' }), '/c/haven/code-cache');
});

const run = promisify(execFile);

/** Loads `bundle` in a process of its own; what it exported and whether the cache served it. */
async function loadInChild(bundle: string, cacheDir: string): Promise<{ value: unknown; cache: string }> {
  const script = `const { loadCached } = await import(${JSON.stringify(START)});
const l = loadCached(${JSON.stringify(bundle)}, ${JSON.stringify(cacheDir)});
process.stdout.write(JSON.stringify({ value: l.exports.value(), cache: l.cache }));`;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
  return JSON.parse(stdout) as { value: unknown; cache: string };
}

function bundleSource(n: number): string {
  // Enough functions that V8's cache is worth something, and a require() of a built-in.
  const fns = Array.from({ length: 50 }, (_, i) => `function f${i}(x) { return x + ${i}; }`).join('\n');
  return `'use strict';\nconst { join } = require('node:path');\n${fns}\nmodule.exports.value = () => [f49(${n}), join('a', 'b'), __filename.endsWith('.cjs')];\n`;
}

/** A directory (removed after the test) holding bundle `name`.cjs; its cache goes in `cache`. */
function bundleIn(t: TestContext, name: string, n: number) {
  const dir = mkdtempSync(join(tmpdir(), 'haven-start-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bundle = join(dir, `${name}.cjs`);
  writeFileSync(bundle, bundleSource(n));
  return { dir, bundle, cache: join(dir, 'cache') };
}

test('a bundle compiles from the cache the run before wrote; a rebuilt one is compiled and its old cache dropped', async (t) => {
  const { bundle, cache } = bundleIn(t, 'status', 1);

  assert.deepEqual(await loadInChild(bundle, cache), { value: [50, 'a/b', true], cache: 'miss' });
  const first = readdirSync(cache);
  assert.equal(first.length, 1, 'one cache file, written at exit');
  assert.match(first[0]!, /^status\.cjs\.[0-9a-f]+\.v\d+/);
  assert.deepEqual(await loadInChild(bundle, cache), { value: [50, 'a/b', true], cache: 'hit' });

  // Rebuilt: another source (of the same length) and another mtime.
  writeFileSync(bundle, bundleSource(2));
  utimesSync(bundle, new Date(), new Date(Date.now() + 5_000));
  assert.deepEqual(await loadInChild(bundle, cache), { value: [51, 'a/b', true], cache: 'miss' });
  const second = readdirSync(cache);
  assert.equal(second.length, 1, 'the old build’s cache is gone');
  assert.notEqual(second[0], first[0]);
  assert.deepEqual(await loadInChild(bundle, cache), { value: [51, 'a/b', true], cache: 'hit' });
});

test('a damaged cache is refused by V8 and replaced; an unwritable one costs nothing but the cache', async (t) => {
  const { dir, bundle, cache } = bundleIn(t, 'images', 3);
  await loadInChild(bundle, cache);
  const file = join(cache, readdirSync(cache)[0]!);
  const bytes = readFileSync(file);
  bytes.fill(0x5a, 0, 64);
  writeFileSync(file, bytes);
  assert.deepEqual(await loadInChild(bundle, cache), { value: [52, 'a/b', true], cache: 'miss' });
  assert.deepEqual(await loadInChild(bundle, cache), { value: [52, 'a/b', true], cache: 'hit' }, 'rewritten');

  // A file where the cache directory should be: nothing can be cached, the bundle still runs.
  const blocked = join(dir, 'blocked');
  writeFileSync(blocked, 'not a directory');
  assert.deepEqual(await loadInChild(bundle, join(blocked, 'cache')), {
    value: [52, 'a/b', true],
    cache: 'miss',
  });
  assert.deepEqual(await loadInChild(bundle, join(blocked, 'cache')), {
    value: [52, 'a/b', true],
    cache: 'miss',
  });
});

test('startCompiled runs the named command’s bundle, and leaves what has none to the whole CLI', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'haven-start-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'run'));
  writeFileSync(
    join(dir, 'run', 'activate.cjs'),
    `module.exports.register = 'the activate module';
module.exports.main = async (argv, commands) => (commands[0] === 'the activate module' && argv[2] === 'priority' ? 7 : 1);`,
  );
  const env = { HAVEN_CODE_CACHE: 'off' };
  const main = startCompiled(['node', 'haven', 'priority', 'web1', '2'], join(dir, 'run'), env);
  assert.ok(main, 'priority is in the activate bundle');
  assert.equal(await main(['node', 'haven', 'priority', 'web1', '2']), 7);
  assert.equal(startCompiled(['node', 'haven', 'status'], join(dir, 'run'), env), undefined, 'no bundle');
  assert.equal(startCompiled(['node', 'haven', '--help'], join(dir, 'run'), env), undefined, 'no command');
});
