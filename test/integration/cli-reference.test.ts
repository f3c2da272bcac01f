/**
 * The man pages and completions describe exactly the commands commander registers. Every
 * expectation is read from the program itself (commander's own option and argument lists), not
 * from the generator's model, so a flag the generator missed, or a new command whose page
 * package.json does not list, fails here. The completions run in real bash and zsh; names come
 * from the real `haven completion values` through a `haven` on PATH that runs this tree.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Command, Help } from 'commander';
import { commandTree } from '../../src/cli/main.ts';
import { completionScript, manPages } from '../../src/cli/reference/index.ts';
import { describeProgram } from '../../src/cli/reference/model.ts';
import { installPath } from '../../src/core/package-root.ts';
import { bashComplete, zshComplete } from '../helpers/completion.ts';

const program = await commandTree();

/** Every command an operator sees (commander's own notion of hidden), with its path. */
function walk(cmd: Command, path: string[] = []): [string[], Command][] {
  const visible = new Help().visibleCommands(cmd).filter((c) => c.name() !== 'help');
  return [[path, cmd], ...visible.flatMap((c) => walk(c, [...path, c.name()]))];
}
const commands = walk(program);

/** The long option names commander accepts for a command (its own; --help included). */
/** What the pages and scripts must offer: hidden options are deprecated aliases (`--uri`). */
function longOptions(cmd: Command): string[] {
  return [...cmd.options.filter((o) => !o.hidden).map((o) => o.long), '--help'].filter((n): n is string =>
    Boolean(n),
  );
}

test('one man page per command, and package.json lists exactly those pages', () => {
  const pages = manPages(describeProgram(program), '0.0.0').map((p) => p.file);
  const expected = ['haven.1', ...program.commands.map((c) => `haven-${c.name()}.1`)];
  assert.deepEqual([...pages].sort(), [...expected].sort());
  const pkg = JSON.parse(readFileSync(installPath('package.json'), 'utf8')) as { man: string[] };
  assert.deepEqual(
    [...pkg.man].sort(),
    expected.map((f) => `dist/man/man1/${f}`).sort(),
    'package.json "man" must list every page scripts/build generates (one per top-level command)',
  );
});

test('every option and argument of every command is on its man page', () => {
  const pages = new Map(manPages(describeProgram(program), '0.0.0').map((p) => [p.file, p.text]));
  for (const [path, cmd] of commands) {
    if (path.length === 0) continue;
    const page = pages.get(`haven-${path[0]}.1`);
    assert.ok(page, `no page for ${path.join(' ')}`);
    for (const name of longOptions(cmd)) {
      assert.ok(
        page.includes(name.replace(/-/g, '\\-')),
        `haven-${path[0]}.1 lacks ${path.join(' ')} ${name}`,
      );
    }
    for (const a of cmd.registeredArguments) {
      assert.ok(
        page.includes(`.I ${a.name().replace(/-/g, '\\-')}`),
        `haven-${path[0]}.1 lacks <${a.name()}>`,
      );
    }
    assert.ok(
      page.includes(cmd.description().split('\n')[0]!.replace(/-/g, '\\-')),
      `${path.join(' ')} description`,
    );
  }
});

test('the man pages are valid roff that man renders', () => {
  const dir = mkdtempSync(join(tmpdir(), 'haven-t-man-'));
  try {
    for (const page of manPages(describeProgram(program), '1.2.3')) {
      writeFileSync(join(dir, page.file), page.text);
      const out = execFileSync('man', ['--warnings', '-l', join(dir, page.file)], {
        env: { ...process.env, MANWIDTH: '100' },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }).replace(/.\x08/g, '');
      assert.match(out, /NAME/);
      assert.match(out, /haven 1\.2\.3/);
    }
    const protect = execFileSync('man', ['-l', join(dir, 'haven-protect.1')], {
      env: { ...process.env, MANWIDTH: '100' },
      encoding: 'utf8',
    }).replace(/.\x08/g, '');
    assert.match(protect, /haven protect \[options\] <server>/);
    assert.match(protect, /--to target/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A directory holding `haven` (this tree) for the scripts' `command haven completion values`. */
function havenOnPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'haven-t-path-'));
  writeFileSync(
    join(dir, 'haven'),
    `#!/bin/sh\nexec ${process.execPath} ${installPath('bin', 'haven.mjs')} "$@"\n`,
  );
  chmodSync(join(dir, 'haven'), 0o755);
  return dir;
}

/** The example configuration names the jobs, targets and drills the scripts must offer. */
const env = (bin: string) => ({
  ...process.env,
  PATH: `${bin}:${process.env.PATH}`,
  HAVEN_CONFIG: installPath('examples', 'haven.yaml'),
});

test('bash: commands, subcommands, every option of every command, and value sources', () => {
  const bin = havenOnPath();
  try {
    const script = join(bin, 'haven.bash');
    writeFileSync(script, completionScript(program, 'bash'));
    const complete = (words: string[]) => bashComplete(script, words, env(bin));
    assert.deepEqual(complete(['haven', '']).sort(), program.commands.map((c) => c.name()).sort());
    assert.deepEqual(complete(['haven', 'job', '']).sort(), ['list', 'run', 'show']);
    for (const [path, cmd] of commands) {
      if (path.length === 0 || cmd.commands.length > 0) continue;
      const offered = complete(['haven', ...path, '--']);
      for (const name of longOptions(cmd))
        assert.ok(offered.includes(name), `${path.join(' ')}: ${name} not offered`);
      assert.ok(offered.includes('--config'), `${path.join(' ')}: global --config not offered`);
    }
    // Names from the configuration, through the real `haven completion values`.
    assert.deepEqual(complete(['haven', 'job', 'run', '']), ['nightly', 'offsite', 'weekly-usb']);
    assert.deepEqual(complete(['haven', 'forget', 'web01', '--target', 'd']), ['dr1', 'dr2']);
    assert.deepEqual(complete(['haven', 'protect', 'web01', '--to', '=', 'u']), ['usb']);
    assert.deepEqual(complete(['haven', 'drill', '--drill', '']), ['weekly']);
    // A value is not taken for a command word: after `--job nightly`, still the events options.
    assert.ok(complete(['haven', 'events', '--job', 'nightly', '--pro']).includes('--problems'));
    // Paths: directories for --store.
    const dirs = complete(['haven', 'images', '--store', `${installPath('sr')}`]);
    assert.deepEqual(dirs, [installPath('src')]);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});

test('zsh: subcommands with their descriptions, options, and job names', () => {
  const bin = havenOnPath();
  try {
    writeFileSync(join(bin, '_haven'), completionScript(program, 'zsh'));
    const complete = (line: string, until: string) => zshComplete(bin, line, until, env(bin));
    const subs = complete('haven job ', '*show*--*');
    assert.match(subs, /list\s+-- every job/);
    assert.match(subs, /run\s+-- run a job now/);
    assert.match(subs, /show\s+-- one job/);
    const opts = complete('haven protect web01 --co', '*--copies*');
    for (const o of ['--copies', '--compress', '--consistency', '--config'])
      assert.ok(opts.includes(o), `${o} in ${opts}`);
    const jobs = complete('haven job run ', '*weekly-usb*');
    for (const j of ['nightly', 'offsite', 'weekly-usb']) assert.ok(jobs.includes(j), `${j} in ${jobs}`);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});
