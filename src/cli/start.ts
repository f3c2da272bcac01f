/**
 * The compiled start of `haven` (bin/haven.mjs, built into dist/cli/start.cjs by
 * scripts/bundle.mjs). Every command also has a bundle of its own, dist/cli/run/<module>.cjs: the
 * command's module and main.ts in one CommonJS file. Loading one file instead of some forty ES
 * module chunks, and compiling it from V8's code cache of an earlier run, roughly halves what a
 * command spends before its own work (bench/README.md, "fleet"); every replication starts two
 * such processes (docs/decisions.md, "One bundle per command, compiled from a code cache").
 *
 * The code cache is an optimisation only: a cache that cannot be read, written or used is
 * ignored, and V8 itself refuses one made for another source, Node or set of flags
 * (`cachedDataRejected`).
 */
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import vm from 'node:vm';
import { commandModuleName } from './command-name.ts';

/** What a command bundle exports. */
interface CommandBundle {
  main(argv: string[], commands: readonly unknown[]): Promise<number>;
  register: unknown;
}

/**
 * Where compiled code is cached: `$HAVEN_CODE_CACHE` (`off` for nowhere), or haven/code-cache in
 * the user's cache directory (XDG). One user's cache is never another's.
 */
export function codeCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const set = env.HAVEN_CODE_CACHE;
  if (set === 'off') return undefined;
  if (set) return set;
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'haven', 'code-cache');
}

/**
 * The name every cache of `file` starts with: its name and a hash of its directory, so that two
 * installations (a clone and a package) keep a cache each instead of replacing each other's.
 */
function cachePrefix(file: string): string {
  let h = 0x811c9dc5;
  for (const c of dirname(file)) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return `${basename(file)}.${h.toString(16)}.`;
}

/** The cache file of `file` as it is now: another build, Node or architecture names another file. */
function cacheFileOf(dir: string, file: string): string {
  const s = statSync(file);
  const build = `${process.version}.${process.arch}.${s.size}.${Math.trunc(s.mtimeMs)}`;
  return join(dir, `${cachePrefix(file)}${build}.v8`);
}

/**
 * Writes `data` as `target` atomically (concurrent processes may write it too) and drops older
 * caches of the same bundle.
 */
function storeCache(dir: string, target: string, bundle: string, data: Buffer): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const temp = `${target}.${process.pid}.tmp`;
    writeFileSync(temp, data, { mode: 0o600 });
    renameSync(temp, target);
    const prefix = cachePrefix(bundle);
    for (const f of readdirSync(dir)) {
      if (f.startsWith(prefix) && join(dir, f) !== target && !f.endsWith('.tmp')) unlinkSync(join(dir, f));
    }
  } catch {
    // An unwritable cache costs the next run its compile time, nothing else.
  }
}

/** A loaded bundle, and whether its code came from the cache (`hit`) or was compiled (`miss`: cached at exit). */
export interface Loaded {
  exports: Record<string, unknown>;
  cache: 'hit' | 'miss' | 'off';
}

/**
 * Loads the CommonJS file `file` as `require` would, compiling it from the code cache in
 * `cacheDir` when one is there and V8 accepts it. When there was none (or V8 refused it), a new
 * one is written as the process exits, so it holds the functions this run compiled too.
 */
export function loadCached(file: string, cacheDir: string | undefined): Loaded {
  const source = readFileSync(file, 'utf8');
  const target = cacheDir === undefined ? undefined : cacheFileOf(cacheDir, file);
  let cachedData: Buffer | undefined;
  try {
    if (target) cachedData = readFileSync(target);
  } catch {
    cachedData = undefined;
  }
  // CommonJS's module wrapper, as require() compiles a file.
  const wrapped = `(function (exports, require, module, __filename, __dirname) { ${source}\n});`;
  const script = new vm.Script(wrapped, {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
  });
  const hit = cachedData !== undefined && script.cachedDataRejected === false;
  if (cacheDir !== undefined && target !== undefined && !hit) {
    process.once('exit', () => storeCache(cacheDir, target, file, script.createCachedData()));
  }
  const run = script.runInThisContext() as (
    exports: unknown,
    require: NodeJS.Require,
    module: { exports: Record<string, unknown> },
    filename: string,
    dirname: string,
  ) => void;
  const module = { exports: {} as Record<string, unknown> };
  run.call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  return { exports: module.exports, cache: target === undefined ? 'off' : hit ? 'hit' : 'miss' };
}

/**
 * The `main` of the command `argv` names, from that command's bundle in `bundles`; undefined
 * when `argv` names no command with a bundle (help, `--version`, a misspelt name), which the full
 * CLI (dist/cli/main.js) answers.
 */
export function startCompiled(
  argv: readonly string[],
  bundles: string,
  env: NodeJS.ProcessEnv = process.env,
): ((argv: string[]) => Promise<number>) | undefined {
  const name = commandModuleName(argv);
  if (name === undefined) return undefined;
  const file = join(bundles, `${name}.cjs`);
  try {
    statSync(file);
  } catch {
    return undefined;
  }
  const bundle = loadCached(file, codeCacheDir(env)).exports as unknown as CommandBundle;
  return (args) => bundle.main(args, [bundle.register]);
}
