/**
 * Names that come from outside (server names, disk names, job and target names) end up in file
 * names and LV names on the DR target. They must never escape the store root (docs/design.md §4.3) and
 * must be valid LVM names so both stores accept the same set: letters, digits and `+_.-`, not
 * starting with `-` or `.`, at most 100 characters.
 */
import { HavenError } from './errors.ts';

const SAFE = /^[A-Za-z0-9+_][A-Za-z0-9+_.-]{0,99}$/;

export class BadNameError extends HavenError {
  constructor(what: string, name: string) {
    super('BAD_NAME', `invalid ${what} name ${JSON.stringify(name)}`, {
      kind: 'usage',
      hint: `A ${what} name may hold letters, digits and + _ . - (not first: . or -), at most 100 characters.`,
      details: { what, name },
    });
  }
}

export function isSafeName(name: string): boolean {
  return SAFE.test(name) && !name.includes('..');
}

/** Returns the name if it is safe, otherwise throws BAD_NAME. */
export function checkName(what: string, name: string): string {
  if (typeof name !== 'string' || !isSafeName(name)) throw new BadNameError(what, String(name));
  return name;
}
