/**
 * The catalogue of error codes is complete and docs/errors.md is what it generates (issue 14,
 * item 5): every code a source file writes is catalogued, every catalogued code is used, no code
 * is in two catalogues, a throw site's kind agrees with the catalogue where the text shows both,
 * every entry says what it means and what to do (hints.test.ts checks the commands it names), and docs/errors.md
 * equals scripts/gen-errors' output. tsc checks the same at every typed throw site; this test is
 * the net for codes written as plain data (API replies, verify problems, recorded run errors).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { ERROR_KINDS, type ErrorKind } from '../core/errors.ts';
import { CATALOGUES, catalogueFile, entryKinds, renderErrorsDoc } from './error-catalogue.ts';

const root = join(import.meta.dirname, '..', '..');
const src = join(root, 'src');

const owner = new Map<string, string>();
const duplicates: string[] = [];
for (const c of CATALOGUES) {
  for (const code of Object.keys(c.codes)) {
    const first = owner.get(code);
    if (first) duplicates.push(`${code} is in ${catalogueFile(first)} and ${catalogueFile(c.component)}`);
    else owner.set(code, c.component);
  }
}

/** Source files (tests too: their fixtures must use real codes), the catalogues themselves excluded. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'ui' ? [] : sources(p);
    // This file writes codes only as examples in its messages.
    return e.name.endsWith('.ts') && !['error-codes.ts', 'error-catalogue.test.ts'].includes(e.name)
      ? [p]
      : [];
  });
}

const files = sources(src).map((p) => ({ path: relative(root, p), text: readFileSync(p, 'utf8') }));

/**
 * A literal is taken for an error code when it starts with a prefix some catalogued code has
 * (STORE_, NBD_, BAD_, …) or stands where codes stand: first argument of an …Error/…error call,
 * or a `code:`/`errorCode:` property. Other upper-case strings (NBD option names, frame types,
 * SQLite result codes, environment variables) have neither. Codes without an underscore (USAGE,
 * INTERNAL, INTERRUPTED) are found by position only.
 */
const PREFIXES = new Set([...owner.keys()].filter((c) => c.includes('_')).map((c) => c.split('_')[0]!));
const LITERAL = /'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)'/g;
const IN_CODE_POSITION = /(?:[Ee]rror(?:<[^>(]*>)?\(\s*|\bsuper\(\s*|\b(?:code|errorCode)\s*[:=]=?=?\s*)$/;
/** Upper-case literals in code position that are not Haven's: errno, SQLite, OpenSSL and Node codes. */
const FOREIGN = /^(E[A-Z]+|SQLITE_[A-Z_]+|ERR_[A-Z_]+|CERT_[A-Z_]+)$/;

/** Every upper-case literal of the sources, with where it stands. */
function literals(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const f of files) {
    for (const m of f.text.matchAll(LITERAL)) {
      const code = m[1]!;
      const before = f.text.slice(Math.max(0, m.index - 40), m.index);
      const looksLikeCode =
        (code.includes('_') && PREFIXES.has(code.split('_')[0]!)) ||
        (IN_CODE_POSITION.test(before) && !FOREIGN.test(code));
      if (!looksLikeCode && !owner.has(code)) continue;
      const line = f.text.slice(0, m.index).split('\n').length;
      found.set(code, [...(found.get(code) ?? []), `${f.path}:${line}`]);
    }
  }
  return found;
}

/** The catalogue a code found in `path` belongs in: its component's, if that has one. */
function whereToAdd(path: string): string {
  const component = path.split('/')[1]!;
  return CATALOGUES.some((c) => c.component === component)
    ? catalogueFile(component)
    : 'the error-codes.ts of the component that reports it';
}

test('every error-codes.ts in src/ is one of the catalogues', () => {
  const withCatalogue = readdirSync(src, { withFileTypes: true })
    .filter((d) => d.isDirectory() && readdirSync(join(src, d.name)).includes('error-codes.ts'))
    .map((d) => d.name)
    .sort();
  assert.deepEqual(
    withCatalogue,
    CATALOGUES.map((c) => c.component).sort(),
    'list every src/<component>/error-codes.ts in CATALOGUES and HavenCodeRegistry (src/cli/error-catalogue.ts)',
  );
});

test('no code is in two catalogues', () => {
  assert.deepEqual(duplicates, []);
});

test('every code a source file writes is in a catalogue', () => {
  const missing = [...literals()]
    .filter(([code]) => !owner.has(code))
    .map(
      ([code, at]) =>
        `${code} (used at ${at.join(', ')}): add it to ${whereToAdd(at[0]!)} with kind, meaning and action, then run scripts/gen-errors`,
    );
  assert.deepEqual(missing, []);
});

test('every catalogued code is used somewhere in src/', () => {
  // A test writing a code does not make anything report it.
  const used = literals();
  const unused = [...owner]
    .filter(([code]) => !(used.get(code) ?? []).some((at) => !at.includes('.test.ts:')))
    .map(([code, c]) => `${code}: nothing reports it; remove it from ${catalogueFile(c)}`);
  assert.deepEqual(unused, []);
});

/** `'CODE', 'kind'` (storeError, recoveryError, TransportError), `'CODE', <message>, { kind: 'kind'`, `code: 'CODE', kind: 'kind'`. */
const KIND = ERROR_KINDS.join('|');
const SITE = new RegExp(
  `'([A-Z][A-Z0-9_]+)',\\s*(?:'(${KIND})'|(?:\`[^\`]*\`|'[^']*'),\\s*\\{\\s*kind: '(${KIND})')|code: '([A-Z][A-Z0-9_]+)',\\s*kind: '(${KIND})'`,
  'g',
);

test('the kind at a throw site is one the catalogue allows for its code', () => {
  const wrong: string[] = [];
  let checked = 0;
  for (const f of files) {
    for (const m of f.text.matchAll(SITE)) {
      const code = m[1] ?? m[4]!;
      const kind = (m[2] ?? m[3] ?? m[5]) as ErrorKind;
      const c = CATALOGUES.find((x) => x.component === owner.get(code));
      if (!c) continue; // reported by the test above
      checked++;
      const allowed = entryKinds(c.codes[code]!);
      if (!allowed.includes(kind)) {
        const line = f.text.slice(0, m.index).split('\n').length;
        wrong.push(
          `${f.path}:${line}: ${code} with kind ${kind}; ${catalogueFile(c.component)} allows ${allowed.join(', ')}`,
        );
      }
    }
  }
  assert.deepEqual(wrong, []);
  assert.ok(checked > 100, `only ${checked} throw sites matched: the pattern no longer fits the sources`);
});

// That every action names only real commands and flags is checked with every hint (hints.test.ts).
test('every entry says what it means and what to do', () => {
  const problems: string[] = [];
  for (const c of CATALOGUES) {
    for (const [code, e] of Object.entries(c.codes)) {
      const at = `${code} in ${catalogueFile(c.component)}`;
      if (!/^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/.test(code)) problems.push(`${at}: codes are UPPER_SNAKE_CASE`);
      for (const [field, text] of [
        ['meaning', e.meaning],
        ['action', e.action],
      ] as const) {
        if (!/^\S.*[.)]$/.test(text))
          problems.push(`${at}: ${field} must be a sentence ending in a full stop`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('docs/errors.md is what scripts/gen-errors writes from the catalogues', () => {
  const committed = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
  assert.ok(
    committed === renderErrorsDoc(),
    'docs/errors.md differs from the catalogues (src/*/error-codes.ts): run scripts/gen-errors and commit the result',
  );
});
