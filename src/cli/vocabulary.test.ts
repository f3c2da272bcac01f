/**
 * One CLI vocabulary (issue 20, item 8), checked over the whole command tree (`commandTree()`),
 * so a new command or flag cannot drift from the rules docs/cli.md lists: one name per concept,
 * no visible `--uri`, an Examples section on every help page whose every example parses against
 * the command's own definition, `--json` on listings, and `--dry-run` on every command that
 * changes something unless docs/cli.md says why not.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Command, Option } from 'commander';
import { commandTree } from './main.ts';
import { describeProgram, manPages } from './reference/index.ts';
import { commandPath } from './usage-errors.ts';

/** Commands that only look: each must have --json. */
const LISTINGS = [
  'servers',
  'doctor',
  'images',
  'verify',
  'status',
  'runs',
  'events',
  'job list',
  'job show',
  'config check',
  'guard status',
  'host list',
  'host show',
  'host check',
];
/** Commands that change something: each must have --dry-run, or be in WITHOUT_DRY_RUN. */
const CHANGES = [
  'activate',
  'deactivate',
  'priority',
  'drill',
  'restore',
  'failback',
  'failback-receive',
  'switchover',
  'protect',
  'receive',
  'forget',
  'prune',
  'job run',
  'serve',
  'guard install',
  'guard uninstall',
  'guard set',
  'guard clear',
  'host setup',
  'host backup',
  'host medium',
  'host drill',
];
/** Commands that print a document (a script): neither a listing nor a change. */
const DOCUMENTS = ['completion bash', 'completion zsh'];
/** docs/cli.md says why each has no --dry-run. */
const WITHOUT_DRY_RUN = [
  'serve',
  'failback',
  'failback-receive',
  'guard install',
  'guard uninstall',
  'guard set',
  'guard clear',
];
/** Their stdout is a stream, a daemon's log or a document, not a result: docs/cli.md says so. */
const WITHOUT_JSON = ['serve', 'receive', 'failback-receive', ...DOCUMENTS];

/** One name, one value form for each shared concept; names that would say the same otherwise. */
const FORMS: Record<string, string> = {
  '--store': '--store <path>',
  '--generation': '--generation <k>',
  '--connect': '--connect <uri>',
  '--json': '--json',
  '--dry-run': '--dry-run',
  '--network-map': '--network-map <from=to>',
  '--mac': '--mac <policy>',
};
const SYNONYMS = [
  '--url',
  '--libvirt-uri',
  '--dryrun',
  '--gen',
  '--seq',
  '--output',
  '--format-json',
  '--plan',
];

interface Entry {
  path: string;
  cmd: Command;
}

/** Every command but hidden ones (`completion values`, what the completion scripts call). */
function walk(cmd: Command, prefix: string[] = []): Entry[] {
  return cmd.commands.flatMap((c) => {
    if ((c as unknown as { _hidden: boolean })._hidden) return [];
    const path = [...prefix, c.name()];
    return [{ path: path.join(' '), cmd: c }, ...walk(c, path)];
  });
}

const leaves = (all: Entry[]) => all.filter((e) => e.cmd.commands.length === 0);
const has = (cmd: Command, long: string) => cmd.options.some((o: Option) => o.long === long && !o.hidden);

/** What `haven <path> --help` prints, with the texts added after it. */
function helpText(cmd: Command): string {
  let out = '';
  cmd.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  cmd.outputHelp();
  return out;
}

/** The examples of a help page: description and command line. */
function examplesOf(help: string): Array<{ what: string; line: string }> {
  const at = help.indexOf('\nExamples:\n');
  if (at < 0) return [];
  const out: Array<{ what: string; line: string }> = [];
  let what = '';
  for (const l of help.slice(at).split('\n')) {
    if (l.startsWith('  # ')) what = l.slice(4);
    else if (l.startsWith('  $ ')) out.push({ what, line: l.slice(4) });
  }
  return out;
}

/** Shell words (plain, '…' and "…" quoted) of the command, up to a redirection or a pipe. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) {
    if (m[3] !== undefined && /^(>>?|\||&&|;)$/.test(m[3])) break;
    words.push(m[1] ?? m[2] ?? m[3]!);
  }
  return words;
}

/** Parses `words` with commander against a fresh tree whose actions do nothing. */
async function parses(words: string[]): Promise<{ ok: true; path: string } | { ok: false; error: string }> {
  const program = await commandTree();
  for (const e of walk(program)) e.cmd.action(() => {});
  const argv = ['node', 'haven', ...words.slice(1)];
  const saved = process.env.HAVEN_LIBVIRT_URI;
  try {
    await program.parseAsync(argv);
    return { ok: true, path: commandPath(program, argv).join(' ') };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  } finally {
    // --connect sets it for the process it runs in (cli/options.ts).
    if (saved === undefined) delete process.env.HAVEN_LIBVIRT_URI;
    else process.env.HAVEN_LIBVIRT_URI = saved;
  }
}

test('every leaf command is classified as a listing or as one that changes something', async () => {
  const all = leaves(walk(await commandTree())).map((e) => e.path);
  const unclassified = all.filter((p) => ![...LISTINGS, ...CHANGES, ...DOCUMENTS].includes(p));
  assert.deepEqual(
    unclassified,
    [],
    'add new commands to LISTINGS, CHANGES or DOCUMENTS (and the rules to docs/cli.md)',
  );
  assert.deepEqual(
    [...LISTINGS, ...CHANGES, ...DOCUMENTS].filter((p) => !all.includes(p)),
    [],
    'no classified command has gone',
  );
});

test('listings have --json; commands that change something have --dry-run or a documented reason', async () => {
  const all = walk(await commandTree());
  const docs = readFileSync(join(import.meta.dirname, '../../docs/cli.md'), 'utf8');
  const problems: string[] = [];
  for (const { path, cmd } of leaves(all)) {
    if (!WITHOUT_JSON.includes(path) && !has(cmd, '--json')) problems.push(`haven ${path} has no --json`);
    if (CHANGES.includes(path) && !WITHOUT_DRY_RUN.includes(path) && !has(cmd, '--dry-run'))
      problems.push(`haven ${path} changes something and has no --dry-run`);
    if (WITHOUT_DRY_RUN.includes(path) && has(cmd, '--dry-run'))
      problems.push(`haven ${path} has --dry-run now: take it off WITHOUT_DRY_RUN`);
  }
  for (const path of [...WITHOUT_DRY_RUN, ...WITHOUT_JSON]) {
    if (!docs.includes(`\`haven ${path}\``))
      problems.push(`docs/cli.md does not say why haven ${path} is an exception`);
  }
  assert.deepEqual(problems, []);
});

test('one name for each concept: no visible --uri, the same value form everywhere', async () => {
  const program = await commandTree();
  const problems: string[] = [];
  for (const { path, cmd } of walk(program)) {
    for (const o of cmd.options) {
      if (o.long === '--uri' && !o.hidden) problems.push(`haven ${path}: --uri is visible (it is --connect)`);
      if (o.long === '--uri' && !has(cmd, '--connect'))
        problems.push(`haven ${path}: --uri without --connect`);
      if (o.hidden) continue;
      if (SYNONYMS.includes(o.long ?? ''))
        problems.push(`haven ${path}: ${o.long} says what another flag says`);
      const form = FORMS[o.long ?? ''];
      if (form && o.flags !== form) problems.push(`haven ${path}: ${o.flags}, not ${form}`);
    }
  }
  assert.deepEqual(problems, []);
  // The man pages are made from the same definitions: a deprecated alias is not on them.
  const pages = manPages(describeProgram(program), '0.0.0');
  assert.ok(pages.some((p) => p.text.includes('\\-\\-connect')));
  assert.deepEqual(
    pages.filter((p) => p.text.includes('\\-\\-uri ')).map((p) => p.file),
    [],
  );
  // The global ones: -v/-d/-q and the configuration file.
  assert.deepEqual(
    program.options.map((o) => o.flags),
    [
      '-V, --version',
      '-v, --verbose',
      '-d, --debug',
      '-q, --quiet',
      '-c, --config <file>',
      '--log-file <file>',
    ],
  );
});

test('every help page ends with examples, and every example parses against its command', async () => {
  const all = walk(await commandTree());
  const problems: string[] = [];
  let count = 0;
  for (const { path, cmd } of all) {
    const list = examplesOf(helpText(cmd));
    if (list.length === 0) problems.push(`haven ${path} --help has no examples`);
    for (const { what, line } of list) {
      count++;
      const words = shellWords(line);
      if (!what) problems.push(`${line}: no description`);
      if (words[0] !== 'haven' || line.includes('…')) problems.push(`${line}: not a command line to copy`);
      const r = await parses(words);
      if (!r.ok) problems.push(`${line}: ${r.error}`);
      else if (!r.path.startsWith(path)) problems.push(`${line}: runs haven ${r.path}, not haven ${path}`);
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(count >= all.length, `${count} examples`);
});

test('the checker catches a wrong example', async () => {
  for (const bad of [
    'haven activate web01 --stor /srv/haven',
    'haven restore web01 --store /srv/haven',
    'haven drill --networks bridged',
    'haven activate --generation newest --store /srv/haven',
    'haven servers --uri',
  ]) {
    const r = await parses(shellWords(bad));
    assert.equal(r.ok, false, bad);
  }
  assert.deepEqual(await parses(shellWords("haven drill --store /srv/haven --marker 'login:'")), {
    ok: true,
    path: 'drill',
  });
});
