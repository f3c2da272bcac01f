/**
 * Every component's catalogue of error codes in one list (cli/ may import every component), and
 * docs/errors.md rendered from it. scripts/gen-errors writes the document; error-catalogue.test.ts
 * fails when the document, the catalogues and the codes used in src/ disagree. Adding a code is
 * one entry in the error-codes.ts of the component that reports it, then scripts/gen-errors; a
 * new component's catalogue joins CATALOGUES and HavenCodeRegistry below.
 */
import { CATALOG_CODES } from '../catalog/error-codes.ts';
import { CORE_CODES } from '../core/error-codes.ts';
import { type CodeEntry, ERROR_KINDS, type ErrorKind } from '../core/errors.ts';
import { DAEMON_CODES } from '../daemon/error-codes.ts';
import { ENGINE_CODES } from '../engine/error-codes.ts';
import { HOST_CODES } from '../hosts/error-codes.ts';
import { JOB_CODES } from '../jobs/error-codes.ts';
import { NBD_CODES } from '../nbd/error-codes.ts';
import { PROTOCOL_CODES } from '../protocol/error-codes.ts';
import { RECOVERY_CODES } from '../recovery/error-codes.ts';
import { STORE_CODES } from '../store/error-codes.ts';
import { TRANSPORT_CODES } from '../transport/error-codes.ts';
import { VIRT_CODES } from '../virt/error-codes.ts';
import { CLI_CODES } from './error-codes.ts';
import { EXIT_CODES } from './exit-codes.ts';

/**
 * Every component's codes join core's HavenCodeRegistry here, where all catalogues meet (core
 * cannot import them): HavenError and the factories accept exactly these codes, each with the
 * kinds its entry allows. Two catalogues giving one code different entries do not compile.
 */
declare module '../core/errors.ts' {
  interface HavenCodeRegistry
    extends Readonly<typeof CLI_CODES>,
      Readonly<typeof CATALOG_CODES>,
      Readonly<typeof TRANSPORT_CODES>,
      Readonly<typeof PROTOCOL_CODES>,
      Readonly<typeof STORE_CODES>,
      Readonly<typeof NBD_CODES>,
      Readonly<typeof VIRT_CODES>,
      Readonly<typeof ENGINE_CODES>,
      Readonly<typeof JOB_CODES>,
      Readonly<typeof RECOVERY_CODES>,
      Readonly<typeof HOST_CODES>,
      Readonly<typeof DAEMON_CODES> {}
}

export interface Catalogue {
  /** The folder under src/ (and the heading in docs/errors.md). */
  component: string;
  /** What the component does, for the heading's paragraph. */
  about: string;
  codes: Readonly<Record<string, CodeEntry>>;
}

/** In the order docs/errors.md lists them: from the bottom of docs/design.md §3 to the top. */
export const CATALOGUES: readonly Catalogue[] = [
  {
    component: 'core',
    about:
      'failures any command can report: the command line, the operating system, external programs, configuration, names and units',
    codes: CORE_CODES,
  },
  {
    component: 'cli',
    about: 'mistakes on the command line itself, as the argument parser finds them',
    codes: CLI_CODES,
  },
  {
    component: 'catalog',
    about: 'the SQLite catalog of runs, checkpoints, in-flight deltas and events (in the state directory)',
    codes: CATALOG_CODES,
  },
  { component: 'transport', about: 'targets, child processes, ssh and TLS', codes: TRANSPORT_CODES },
  {
    component: 'protocol',
    about: 'the replication stream between sender and receiver (docs/stream-protocol.md)',
    codes: PROTOCOL_CODES,
  },
  {
    component: 'store',
    about: 'the DR store: descriptor, manifests, deltas, commits and `haven verify` (docs/store-format.md)',
    codes: STORE_CODES,
  },
  {
    component: 'nbd',
    about: 'the NBD client that reads source disks, and the qemu-nbd it starts (docs/nbd.md)',
    codes: NBD_CODES,
  },
  {
    component: 'virt',
    about: 'libvirt, qemu-img, qemu-nbd and the guest agent (docs/virt.md)',
    codes: VIRT_CODES,
  },
  {
    component: 'engine',
    about: 'replicating one server: its disks, its source, one run per server',
    codes: ENGINE_CODES,
  },
  {
    component: 'jobs',
    about: 'jobs, targets, cache drives, alerts and `haven forget` (docs/jobs.md)',
    codes: JOB_CODES,
  },
  {
    component: 'recovery',
    about: 'activation, drills, restore, failback and the primary guard (docs/recovery.md)',
    codes: RECOVERY_CODES,
  },
  {
    component: 'hosts',
    about:
      'hypervisor hosts through Relax-and-Recover: setup, rescue media and backups, host drills (docs/hosts.md)',
    codes: HOST_CODES,
  },
  {
    component: 'daemon',
    about: '`haven serve`: its HTTP API, its address, the drills it runs (docs/daemon.md)',
    codes: DAEMON_CODES,
  },
];

/** Where a component's codes are listed. */
export function catalogueFile(component: string): string {
  return `src/${component}/error-codes.ts`;
}

/** The kinds an entry allows. */
export function entryKinds(entry: CodeEntry): readonly ErrorKind[] {
  return typeof entry.kind === 'string' ? [entry.kind] : entry.kind;
}

function kindCell(entry: CodeEntry): string {
  const kinds = entryKinds(entry);
  if (kinds.length === ERROR_KINDS.length) return 'the kind of the failure it reports';
  return kinds.map((k) => `${k} (${EXIT_CODES[k]})`).join(', ');
}

/** Markdown table cells hold no pipe or line break. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** docs/errors.md, exactly as scripts/gen-errors writes it. */
export function renderErrorsDoc(catalogues: readonly Catalogue[] = CATALOGUES): string {
  const count = catalogues.reduce((n, c) => n + Object.keys(c.codes).length, 0);
  const out = [
    '# Error codes',
    '',
    '<!-- Generated from src/*/error-codes.ts by scripts/gen-errors: edit those, not this file. A new code is',
    '     one entry in the error-codes.ts of the component that reports it, then scripts/gen-errors. -->',
    '',
    'Every error Haven reports carries a stable **code** (operators may script against it), a **kind**',
    'that decides the exit code ([exit-codes.md](exit-codes.md); `src/cli/exit-codes.ts` is the one map',
    'from kinds to numbers) and a **hint** that says what to do in this case. On stderr the code is in',
    'brackets (`haven: error [STORE_LOCKED]: …`); with `--json`, in `{"error": {code, kind, message, hint}}`.',
    'A code listed with several kinds is reported with one of them, as its meaning says.',
    '',
    `This document lists all ${count} codes, per component, with what each means and what to do about it:`,
    `${catalogues.map((c) => `[${c.component}](#${c.component})`).join(' · ')}.`,
    'A receiver sends store and protocol codes to its sender in ERROR frames, so they appear on both sides.',
    '',
    '| exit | kind |',
    '| ---: | ---- |',
    ...[...ERROR_KINDS]
      .sort((a, b) => EXIT_CODES[a] - EXIT_CODES[b])
      .map((k) => `| ${EXIT_CODES[k]} | ${k} |`),
    '',
  ];
  for (const c of catalogues) {
    out.push(
      `## ${c.component}`,
      '',
      `${c.about[0]!.toUpperCase()}${c.about.slice(1)}. Listed in \`${catalogueFile(c.component)}\`.`,
      '',
      '| code | kind (exit) | meaning | what to do |',
      '| ---- | ----------- | ------- | ---------- |',
    );
    for (const [code, entry] of Object.entries(c.codes)) {
      out.push(`| \`${code}\` | ${kindCell(entry)} | ${cell(entry.meaning)} | ${cell(entry.action)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
