/**
 * Server selection in jobs and drills: a list of names and shell-style glob patterns (`*`, `?`,
 * `[abc]`, `[a-z]`, `[!abc]`). A pattern starting with `!` removes the servers it matches from
 * what the patterns before it selected, so `["*", "!test-*"]` is every server but the test ones.
 * Matching is case-sensitive, as libvirt domain names are.
 */
import { ValueProblem } from './config-values.ts';
import { isSafeName } from './names.ts';

/** The characters a server name may hold (core/names.ts) plus the glob operators. */
const PATTERN_CHARS = /^[A-Za-z0-9+_.\-*?[\]!]+$/;

/** Checks one pattern's syntax; returns it unchanged. */
export function parseServerPattern(v: unknown): string {
  if (typeof v !== 'string' || v === '' || v === '!') {
    throw new ValueProblem(
      `expected a server name or glob pattern such as web01 or "web*", got ${JSON.stringify(v)}`,
    );
  }
  const body = v.startsWith('!') ? v.slice(1) : v;
  if (!PATTERN_CHARS.test(body) || (isLiteralServer(body) && !isSafeName(body))) {
    throw new ValueProblem(
      `${JSON.stringify(v)} is not a server name or glob pattern (letters, digits, + _ . - and * ? [ ], with ! only first)`,
    );
  }
  try {
    globToRegExp(body);
  } catch (e) {
    throw new ValueProblem(`${JSON.stringify(v)}: ${(e as Error).message}`);
  }
  return v;
}

/** Translates a glob into an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) throw new Error('unclosed [ in pattern');
      let set = glob.slice(i + 1, end);
      const negate = set.startsWith('!');
      if (negate) set = set.slice(1);
      if (set === '') throw new Error('empty [] in pattern');
      if (set.includes('[') || set.includes('!')) throw new Error('[ or ! inside [] in pattern');
      const escaped = set.replace(/[\\\]^]/g, '\\$&');
      re += `[${negate ? '^' : ''}${escaped}]`;
      i = end;
    } else if (c === ']' || c === '!') throw new Error(`unexpected ${c} in pattern`);
    else re += c.replace(/[.+-]/g, '\\$&');
  }
  return new RegExp(`${re}$`);
}

/** True when the pattern list has at least one pattern that selects (not only `!` removals). */
export function selectsSomething(patterns: readonly string[]): boolean {
  return patterns.some((p) => !p.startsWith('!'));
}

/** The servers among `names` that the pattern list selects, in the order of `names`. */
export function selectServers(patterns: readonly string[], names: readonly string[]): string[] {
  const compiled = patterns.map((p) => ({
    remove: p.startsWith('!'),
    re: globToRegExp(p.startsWith('!') ? p.slice(1) : p),
  }));
  return names.filter((name) => {
    let selected = false;
    for (const { remove, re } of compiled) {
      if (re.test(name)) selected = !remove;
    }
    return selected;
  });
}

/** True when the pattern names exactly one server (no glob operator): it must exist. */
export function isLiteralServer(pattern: string): boolean {
  return !/[*?[\]!]/.test(pattern);
}
