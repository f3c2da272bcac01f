/**
 * The codes of cli/: what commander finds wrong with a command line (cli/usage-errors.ts maps its
 * error codes to these). docs/errors.md is generated from this and the other components'
 * catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

const HELP = 'Read the help page the hint names (the command’s --help) for the options and examples.';

export const CLI_CODES = {
  USAGE_UNKNOWN_OPTION: {
    kind: 'usage',
    meaning: 'The command line has an option the command does not know.',
    action: `Correct or remove it (the hint shows the near miss, if any). ${HELP}`,
  },
  USAGE_UNKNOWN_COMMAND: {
    kind: 'usage',
    meaning: 'The command line names a command Haven does not have.',
    action: 'Use the command the hint suggests; --help without a command lists them all.',
  },
  USAGE_MISSING_ARGUMENT: {
    kind: 'usage',
    meaning: 'A required argument of the command is missing.',
    action: HELP,
  },
  USAGE_MISSING_VALUE: {
    kind: 'usage',
    meaning: 'An option that takes a value was given without one.',
    action: HELP,
  },
  USAGE_MISSING_OPTION: {
    kind: 'usage',
    meaning: 'A mandatory option of the command is missing.',
    action: HELP,
  },
  USAGE_INVALID_VALUE: {
    kind: 'usage',
    meaning: 'A value is not among the choices the option or argument accepts.',
    action: HELP,
  },
  USAGE_EXCESS_ARGUMENTS: {
    kind: 'usage',
    meaning: 'The command line has more arguments than the command takes.',
    action: HELP,
  },
  USAGE_CONFLICTING_OPTIONS: {
    kind: 'usage',
    meaning: 'Two options were given that exclude each other.',
    action: `Give only one of them. ${HELP}`,
  },
  USAGE_ERROR: {
    kind: 'usage',
    meaning: 'Another mistake on the command line, as commander reports it.',
    action: HELP,
  },
} as const satisfies Record<string, CodeEntry>;
