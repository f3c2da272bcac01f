/**
 * Every hint names only real commands (issue 13, item 10): each `haven <command> [sub] [--flag]`
 * a hint mentions must be a command the CLI defines (cli/main.ts, cli/commands/), with every flag
 * it gives. Hints are found in the source as it is written: the value of any `hint` property, of
 * any `action` property (what the catalogues of error codes, src/<component>/error-codes.ts, tell
 * the operator to do; some are the hints of their codes too), and the hint argument of
 * `new UsageError(message, hint)`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import type { Command } from 'commander';
import ts from 'typescript';
import { commandTree } from './main.ts';

const SRC = join(import.meta.dirname, '..');

interface Hint {
  where: string;
  text: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** The text of every string an expression may evaluate to (template holes become `…`). */
function strings(node: ts.Node, consts: Map<string, ts.Expression>, seen = new Set<string>()): string[] {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return [node.text];
  // A hint kept in a constant of the same file (PEER_BUG).
  if (ts.isIdentifier(node)) {
    const value = consts.get(node.text);
    if (!value || seen.has(node.text)) return [];
    return strings(value, consts, new Set([...seen, node.text]));
  }
  if (ts.isTemplateExpression(node)) {
    return [node.head.text + node.templateSpans.map((s) => `…${s.literal.text}`).join('')];
  }
  const out: string[] = [];
  node.forEachChild((c) => {
    out.push(...strings(c, consts, seen));
  });
  return out;
}

function hintsIn(file: string): Hint[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const consts = new Map<string, ts.Expression>();
  const collect = (node: ts.Node) => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer) {
      consts.set(node.name.text, node.initializer);
    }
    node.forEachChild(collect);
  };
  collect(sf);
  const found: Hint[] = [];
  const add = (node: ts.Node) => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart()).line + 1;
    for (const text of strings(node, consts)) found.push({ where: `${relative(SRC, file)}:${line}`, text });
  };
  const visit = (node: ts.Node) => {
    if (ts.isPropertyAssignment(node) && ['hint', 'action'].includes(node.name.getText(sf))) {
      add(node.initializer);
    }
    if (ts.isNewExpression(node) && node.expression.getText(sf) === 'UsageError' && node.arguments?.[1]) {
      add(node.arguments[1]);
    }
    node.forEachChild(visit);
  };
  visit(sf);
  return found;
}

/** `haven <words and flags>` as a hint writes it: up to a backtick or the end of the clause. */
const MENTION = /\bhaven((?: +(?:[a-z][a-z-]*|--?[A-Za-z][\w-]*|<[^>]*>|\[[^\]]*\]|[A-Z]+|…))+)/g;

/** What is wrong with the `haven …` commands in `text` (nothing: an empty list). */
function mentionProblems(text: string, program: Command): string[] {
  const problems: string[] = [];
  for (const m of text.matchAll(MENTION)) {
    const words = m[1]!.trim().split(/ +/);
    let cmd: Command | undefined = program.commands.find((c) => c.name() === words[0]);
    if (!cmd) {
      problems.push(`\`haven ${words[0]}\` is not a command`);
      continue;
    }
    const sub = words[1];
    if (cmd.commands.length > 0 && sub !== undefined && /^[a-z]/.test(sub)) {
      const s = cmd.commands.find((c) => c.name() === sub);
      if (!s) {
        problems.push(`\`haven ${words[0]} ${sub}\` is not a command`);
        continue;
      }
      cmd = s;
    }
    // A hidden flag is a deprecated alias (`--uri`): hints name the flag that replaced it.
    const known = new Set(
      [cmd, program]
        .flatMap((c) => c.options.filter((o) => !o.hidden).flatMap((o) => [o.long, o.short]))
        .filter(Boolean),
    );
    known.add('--help');
    for (const flag of words.filter((w) => w.startsWith('-'))) {
      if (!known.has(flag)) problems.push(`\`haven ${cmd.name()}\` has no ${flag}`);
    }
  }
  return problems;
}

test('the checker finds commands and flags that do not exist', async () => {
  const program = await commandTree();
  assert.deepEqual(mentionProblems('Free space, then run `haven recover` on the target.', program), [
    '`haven recover` is not a command',
  ]);
  assert.deepEqual(mentionProblems('See `haven job start nightly`.', program), [
    '`haven job start` is not a command',
  ]);
  assert.deepEqual(mentionProblems('Run haven verify --store PATH --deep.', program), [
    '`haven verify` has no --deep',
  ]);
  assert.deepEqual(mentionProblems('Run haven drill --store PATH --uri qemu:///system.', program), [
    '`haven drill` has no --uri',
  ]);
  assert.deepEqual(
    mentionProblems(
      'Run `haven verify --store PATH`, wait for it (haven runs), see `haven job run`; Another Haven process.',
      program,
    ),
    [],
  );
});

test('every hint in the source names only real commands and flags', async () => {
  const program = await commandTree();
  const hints = sourceFiles(SRC).flatMap(hintsIn);
  assert.ok(hints.length > 150, `hints were found (${hints.length})`);
  const mentioning = hints.filter((h) => /\bhaven [a-z]/.test(h.text));
  assert.ok(mentioning.length > 20, `hints naming haven commands were found (${mentioning.length})`);
  const problems = hints.flatMap((h) => mentionProblems(h.text, program).map((p) => `${h.where}: ${p}`));
  assert.deepEqual(problems, []);
});
