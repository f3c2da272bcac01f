/**
 * Man pages (roff, the man(7) macros) from the command tree: haven(1) for the program and
 * haven-<command>(1) for each of its commands (a group's page holds its subcommands).
 */
import { EXIT_CODES, EXIT_OK, EXIT_PARTIAL } from '../exit-codes.ts';
import type { ArgumentDoc, CommandDoc, OptionDoc } from './model.ts';

export interface ManPage {
  /** `haven-protect.1` */
  file: string;
  text: string;
}

/** Text for a roff text line: backslashes escaped, no line may start a request by accident. */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

export function pageName(path: readonly string[]): string {
  return ['haven', ...path].join('-');
}

function header(cmd: CommandDoc, version: string): string[] {
  // NAME holds one line (apropos and whatis read it): the description's first sentence.
  const summary = cmd.description.split(/(?<=\.)\s|\n/)[0] ?? '';
  return [
    `.TH ${roff(pageName(cmd.path).toUpperCase())} 1 "" "haven ${roff(version)}" "Haven Manual"`,
    '.SH NAME',
    `${roff(pageName(cmd.path))} \\- ${roff(summary)}`,
  ];
}

function optionItem(o: OptionDoc): string[] {
  const names = o.flags.replace(/\s*[<[].*$/, '');
  const value = o.value === undefined ? '' : ` \\fI${roff(o.value)}${o.variadic ? '\\fR...' : '\\fR'}`;
  const notes = [
    o.mandatory ? 'required' : '',
    o.defaultValue === undefined ? '' : `default: ${o.defaultValue}`,
    o.values?.kind === 'choices' ? `one of: ${o.values.choices.join(', ')}` : '',
  ].filter(Boolean);
  const text = notes.length > 0 ? `${o.description} (${notes.join('; ')})` : o.description;
  return ['.TP', `.B ${roff(names)}${value}`, roff(text)];
}

/** The command's help epilogue, as printed (examples keep their layout). */
function helpAfterSection(cmd: CommandDoc): string[] {
  if (!cmd.helpAfter) return [];
  const [first, ...rest] = cmd.helpAfter.split('\n');
  const examples = /^examples?:\s*$/i.test(first ?? '');
  const body = examples ? rest.join('\n') : cmd.helpAfter;
  return [`.SH ${examples ? 'EXAMPLES' : 'NOTES'}`, '.nf', roff(body.replace(/^\s*\n/, '')), '.fi'];
}

function argumentItem(a: ArgumentDoc): string[] {
  const shape = `${a.required ? 'required' : 'optional'}${a.variadic ? ', one or more' : ''}`;
  return ['.TP', `.I ${roff(a.name)}`, `${roff(a.description)} (${shape}).`];
}

/** Ends `text` with a full stop unless it ends with punctuation already. */
function sentence(text: string): string {
  return /[.!?)]$/.test(text) ? text : `${text}.`;
}

function synopsis(cmd: CommandDoc): string[] {
  return ['.SH SYNOPSIS', `.B ${roff(['haven', ...cmd.path].join(' '))}`, roff(cmd.usage)];
}

/** The commands below `cmd`, each pointing to where it is documented. */
function commandList(cmd: CommandDoc, where: (c: CommandDoc) => string): string[] {
  return cmd.commands.flatMap((c) => [
    '.TP',
    `.B ${roff(c.path.at(-1) ?? '')}`,
    `${roff(sentence(c.description))} ${where(c)}`,
  ]);
}

function seeAlso(cmd: CommandDoc): string[] {
  const pages = cmd.path.length > 0 ? ['haven'] : cmd.commands.map((c) => pageName(c.path));
  const refs = pages.map((p) => `.BR ${roff(p)} (1)`);
  return ['.SH SEE ALSO', ...refs.map((r, i) => (i < refs.length - 1 ? `${r},` : r)), ...docsLine()];
}

function docsLine(): string[] {
  return [
    '.PP',
    'The documentation in /usr/share/doc/haven/ (docs/ in the source tree) explains each component.',
  ];
}

/** Arguments, options and help epilogue of one command; `heading` is .SH for a page, .SS within a group's page. */
function commandBody(cmd: CommandDoc, heading: '.SH' | '.SS'): string[] {
  const title = (t: string) => (heading === '.SH' ? [`.SH ${t}`] : ['.PP', `.I ${t.toLowerCase()}:`]);
  const lines: string[] = [];
  if (cmd.arguments.length > 0) lines.push(...title('ARGUMENTS'), ...cmd.arguments.flatMap(argumentItem));
  if (cmd.options.length > 0) lines.push(...title('OPTIONS'), ...cmd.options.flatMap(optionItem));
  const after = helpAfterSection(cmd);
  if (after.length > 0) lines.push(...title(after[0]!.slice(4)), ...after.slice(1));
  return lines;
}

/**
 * One page per command of the program: haven-protect(1). A group (haven job, haven guard)
 * documents its subcommands on its own page, as git-remote(1) does, so the pages are the
 * program's top-level commands and nothing else.
 */
function commandPage(cmd: CommandDoc, program: CommandDoc, version: string): ManPage {
  const lines = [
    ...header(cmd, version),
    ...synopsis(cmd),
    '.SH DESCRIPTION',
    roff(sentence(cmd.description)),
  ];
  lines.push(...commandBody(cmd, '.SH'));
  if (cmd.commands.length > 0) {
    lines.push('.SH COMMANDS', ...commandList(cmd, () => 'Described below.'));
    for (const sub of cmd.commands) {
      lines.push(`.SS ${roff(['haven', ...sub.path, sub.usage].join(' '))}`, roff(sentence(sub.description)));
      lines.push(...commandBody(sub, '.SS'));
    }
  }
  lines.push(
    '.SH GLOBAL OPTIONS',
    'These come before or after the command name:',
    ...program.options.filter((o) => !o.names.includes('--help')).flatMap(optionItem),
    '.SH EXIT STATUS',
    'As for every command; see \\fBhaven\\fR(1).',
    ...seeAlso(cmd),
  );
  return { file: `${pageName(cmd.path)}.1`, text: `${lines.join('\n')}\n` };
}

const ENVIRONMENT: readonly [string, string][] = [
  ['HAVEN_CONFIG', 'The configuration file (default /etc/haven/haven.yaml).'],
  ['HAVEN_STATE_DIR', 'The catalog, the API token and the schedule state (default /var/lib/haven).'],
  ['HAVEN_RUN_DIR', 'Sockets, scratch files and cache drive mounts (default /var/lib/haven/run).'],
  ['HAVEN_LOG_DIR', 'One log file per run (default /var/log/haven).'],
  ['HAVEN_LIBVIRT_URI', 'The libvirt URI when a command is given none (default qemu:///system).'],
];

function exitStatus(): string[] {
  const rows: [number, string][] = [
    [EXIT_OK, 'success'],
    ...Object.entries(EXIT_CODES).map(([kind, code]): [number, string] => [code, kind]),
    [EXIT_PARTIAL, 'partial: the command finished but something it checked failed'],
  ];
  rows.sort((a, b) => a[0] - b[0]);
  return [
    '.SH EXIT STATUS',
    'Stable; scripts may rely on them. Errors name a stable code in brackets and a hint;',
    'docs/exit-codes.md explains each kind.',
    ...rows.flatMap(([code, what]) => ['.TP', `.B ${code}`, roff(what)]),
  ];
}

function programPage(program: CommandDoc, version: string): ManPage {
  const lines = [
    ...header(program, version),
    ...synopsis(program),
    '.SH DESCRIPTION',
    roff(program.description),
    '.PP',
    'Each command has its own page: \\fBman haven\\-protect\\fR, \\fBman haven\\-job\\-run\\fR.',
    'Every command prints its usage with \\fB\\-\\-help\\fR.',
    '.SH COMMANDS',
    ...commandList(program, (c) => `See \\fB${roff(pageName(c.path))}\\fR(1).`),
    '.SH OPTIONS',
    ...program.options.flatMap(optionItem),
    '.SH ENVIRONMENT',
    ...ENVIRONMENT.flatMap(([name, what]) => ['.TP', `.B ${name}`, roff(what)]),
    '.SH FILES',
    '.TP',
    '.I /etc/haven/haven.yaml',
    'The configuration: targets, jobs, drills, alerts, retention.',
    '.TP',
    '.I /var/log/haven/',
    'One log file per run that changes something.',
    ...exitStatus(),
    ...seeAlso(program),
  ];
  return { file: 'haven.1', text: `${lines.join('\n')}\n` };
}

/** haven.1 and one page per command of the program. */
export function manPages(program: CommandDoc, version: string): ManPage[] {
  return [programPage(program, version), ...program.commands.map((c) => commandPage(c, program, version))];
}
