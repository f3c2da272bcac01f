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
import { installPath } from '../../core/package-root.ts';
import { buildProgram } from '../main.ts';
import { completionScript, manPages } from './index.ts';
import { describeProgram } from './model.ts';

const notRun = () => {
  throw new Error('no command runs here');
};
const program = await buildProgram(['node', 'haven'], notRun);

/** Every command an operator sees (commander's own notion of hidden), with its path. */
function walk(cmd: Command, path: string[] = []): [string[], Command][] {
  const visible = new Help().visibleCommands(cmd).filter((c) => c.name() !== 'help');
  return [[path, cmd], ...visible.flatMap((c) => walk(c, [...path, c.name()]))];
}
const commands = walk(program);

/** The long option names commander accepts for a command (its own; --help included). */
function longOptions(cmd: Command): string[] {
  return [...cmd.options.map((o) => o.long), '--help'].filter((n): n is string => Boolean(n));
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

const env = (bin: string) => ({
  ...process.env,
  PATH: `${bin}:${process.env.PATH}`,
  HAVEN_CONFIG: installPath('examples', 'haven.yaml'),
});

/** Candidates bash's completion function offers for the words (the last is being completed). */
function bashComplete(script: string, bin: string, words: string[]): string[] {
  const file = join(bin, 'haven.bash');
  writeFileSync(file, script);
  const quoted = words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
  const out = execFileSync(
    'bash',
    [
      '-c',
      `source ${file}; complete -p haven; COMP_WORDS=(${quoted}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _haven; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { env: env(bin), encoding: 'utf8' },
  );
  const [registration, ...candidates] = out.split('\n');
  assert.equal(registration, 'complete -F _haven haven');
  return candidates.filter(Boolean);
}

test('bash: commands, subcommands, every option of every command, and value sources', () => {
  const bin = havenOnPath();
  try {
    const script = completionScript(program, 'bash');
    assert.deepEqual(
      bashComplete(script, bin, ['haven', '']).sort(),
      program.commands.map((c) => c.name()).sort(),
    );
    assert.deepEqual(bashComplete(script, bin, ['haven', 'job', '']).sort(), ['list', 'run', 'show']);
    for (const [path, cmd] of commands) {
      if (path.length === 0 || cmd.commands.length > 0) continue;
      const offered = bashComplete(script, bin, ['haven', ...path, '--']);
      for (const name of longOptions(cmd))
        assert.ok(offered.includes(name), `${path.join(' ')}: ${name} not offered`);
      assert.ok(offered.includes('--config'), `${path.join(' ')}: global --config not offered`);
    }
    // Names from the configuration, through the real `haven completion values`.
    assert.deepEqual(bashComplete(script, bin, ['haven', 'job', 'run', '']), [
      'nightly',
      'offsite',
      'weekly-usb',
    ]);
    assert.deepEqual(bashComplete(script, bin, ['haven', 'forget', 'web01', '--target', 'd']), [
      'dr1',
      'dr2',
    ]);
    assert.deepEqual(bashComplete(script, bin, ['haven', 'protect', 'web01', '--to', '=', 'u']), ['usb']);
    assert.deepEqual(bashComplete(script, bin, ['haven', 'drill', '--drill', '']), ['weekly']);
    // A value is not taken for a command word: after `--job nightly`, still the events options.
    assert.ok(
      bashComplete(script, bin, ['haven', 'events', '--job', 'nightly', '--pro']).includes('--problems'),
    );
    // Paths: directories for --store.
    const dirs = bashComplete(script, bin, ['haven', 'images', '--store', `${installPath('sr')}`]);
    assert.deepEqual(dirs, [installPath('src')]);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});

/**
 * What zsh lists after typing `line` and Tab, in an interactive zsh on a pseudo-terminal, read
 * until the listing shows `until` (a zsh glob) or 20 s passed.
 */
function zshComplete(script: string, bin: string, line: string, until: string): string {
  writeFileSync(join(bin, '_haven'), script);
  const driver = `
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1="%% "; fpath=(${bin} $fpath); autoload -Uz compinit; compinit -u -D; unsetopt beep'
zpty -w z 'echo READY'
while zpty -r -t z l; do [[ $l == *READY* ]] && break; done
sleep 0.3
zpty -n -w z ${`'${line}'`}$'\\t'
acc=''
end=$((SECONDS + 20))
while ((SECONDS < end)); do
  if zpty -r -t z l; then acc+=$l; [[ $acc == ${until} ]] && break; else sleep 0.1; fi
done
print -rn -- "$acc"
zpty -d z
`;
  const out = execFileSync('zsh', ['-f', '-c', driver], { env: env(bin), encoding: 'utf8', timeout: 30_000 });
  // The terminal's escape sequences out; what remains is the listing zsh drew.
  return out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
}

test('zsh: subcommands with their descriptions, options, and job names', () => {
  const bin = havenOnPath();
  try {
    const script = completionScript(program, 'zsh');
    const subs = zshComplete(script, bin, 'haven job ', '*show*--*');
    assert.match(subs, /list\s+-- every job/);
    assert.match(subs, /run\s+-- run a job now/);
    assert.match(subs, /show\s+-- one job/);
    const opts = zshComplete(script, bin, 'haven protect web01 --co', '*--copies*');
    for (const o of ['--copies', '--compress', '--consistency', '--config'])
      assert.ok(opts.includes(o), `${o} in ${opts}`);
    const jobs = zshComplete(script, bin, 'haven job run ', '*weekly-usb*');
    for (const j of ['nightly', 'offsite', 'weekly-usb']) assert.ok(jobs.includes(j), `${j} in ${jobs}`);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});
