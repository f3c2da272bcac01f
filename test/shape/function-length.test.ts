/**
 * The shape rule of issue 14: no function in src/ is longer than 120 lines (from its first line to
 * its last, nested functions included), so no new giant can grow unnoticed. Tests are exempt:
 * a test's length is its scenario.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const MAX_LINES = 120;
const root = join(import.meta.dirname, '..', '..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [path] : [];
  });
}

function isFunction(node: ts.Node): node is ts.FunctionLikeDeclaration {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isArrowFunction(node) ||
    ts.isFunctionExpression(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node)
  );
}

function nameOf(node: ts.FunctionLikeDeclaration, file: ts.SourceFile): string {
  if (node.name) return node.name.getText(file);
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)) return parent.name.getText(file);
  if (ts.isCallExpression(parent)) return `callback of ${parent.expression.getText(file).slice(0, 40)}`;
  return '(anonymous)';
}

/** Every function longer than MAX_LINES in one file, as "path:line name (n lines)". */
export function longFunctions(path: string): string[] {
  const file = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (isFunction(node) && node.body) {
      const first = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
      const last = file.getLineAndCharacterOfPosition(node.end).line;
      const lines = last - first + 1;
      if (lines > MAX_LINES) {
        found.push(`${relative(root, path)}:${first + 1} ${nameOf(node, file)} (${lines} lines)`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

test(`no function in src/ is longer than ${MAX_LINES} lines`, () => {
  const files = sources(join(root, 'src'));
  assert.ok(files.length > 100, `the sources were found (${files.length} files)`);
  assert.deepEqual(files.flatMap(longFunctions), []);
});

test('the rule finds a long function, nested or not, and passes one of the limit', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'haven-shape-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `    const v${i} = ${i};`).join('\n');
  const path = join(dir, 'giant.ts');
  writeFileSync(
    path,
    `export function fits() {\n${lines(MAX_LINES - 2)}\n}\n` +
      `export const outer = () => {\n  const inner = function () {\n${lines(MAX_LINES)}\n  };\n  return inner;\n};\n`,
  );
  const found = longFunctions(path).map((f) => f.replace(/^.*giant\.ts/, 'giant.ts'));
  assert.deepEqual(found, [
    `giant.ts:${MAX_LINES + 1} outer (${MAX_LINES + 5} lines)`,
    `giant.ts:${MAX_LINES + 2} inner (${MAX_LINES + 2} lines)`,
  ]);
});
