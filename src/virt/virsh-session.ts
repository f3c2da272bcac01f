/**
 * One long-lived `virsh` process that runs commands one after another, read from its stdin.
 *
 * Starting virsh and connecting to libvirtd costs 20–25 ms per command here, and one protect run
 * makes about fifteen calls (checkpoint checks, backup-begin, job queries, clean-up): a third of
 * a second of an incremental run that takes about two. Through one session each call costs a
 * couple of milliseconds.
 *
 * Each command is wrapped in marker lines on stdout and stderr (`echo`, `echo --err`), so its
 * output and its "error: …" lines are told apart from the prompt virsh prints between commands
 * and from the next command's output. virsh carries on after a failed command, as in a script.
 * A command that times out kills the session; the next one starts a new process.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { quoteVirshArg } from './virsh-quote.ts';

export interface SessionResult {
  stdout: string;
  /** Everything the command printed on stderr ("error: …" lines when it failed). */
  stderr: string;
}

/** The session ended; `started` says whether the command in flight had begun. */
export class SessionBroken extends Error {
  timedOut = false;
  started = false;
}

interface Pending {
  id: number;
  resolve: (r: SessionResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class VirshSession {
  private readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private err = '';
  private pending: Pending | null = null;
  private nextId = 1;
  private dead: SessionBroken | null = null;

  constructor(uri: string, env: NodeJS.ProcessEnv) {
    this.child = spawn('virsh', ['-q', '-c', uri], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (d: string) => {
      this.out += d;
      this.check();
    });
    this.child.stderr.on('data', (d: string) => {
      this.err += d;
      this.check();
    });
    const broken = (why: string) => {
      this.dead ??= new SessionBroken(why);
      this.failPending(this.dead);
    };
    this.child.on('error', (e) => broken(`virsh could not run: ${e.message}`));
    this.child.on('close', (code, signal) => broken(`virsh exited (${signal ?? code})`));
    this.child.stdin.on('error', () => {});
    this.idle();
  }

  /** True while a command runs: callers run other commands elsewhere meanwhile. */
  get busy(): boolean {
    return this.pending !== null;
  }

  get alive(): boolean {
    return this.dead === null;
  }

  run(args: readonly string[], timeoutMs: number): Promise<SessionResult> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.pending) return Promise.reject(new Error('VirshSession.run while a command runs'));
    const id = this.nextId++;
    this.out = '';
    this.err = '';
    return new Promise<SessionResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.dead ??= new SessionBroken(`virsh ${args[0] ?? ''} did not finish in ${timeoutMs} ms`);
        this.failPending(this.dead, true);
        this.child.kill('SIGKILL');
      }, timeoutMs);
      this.pending = { id, resolve, reject, timer };
      this.busyNow();
      const cmd = args.map(quoteVirshArg).join(' ');
      // Typed with a quote inside, so the echo of the typed line never contains the marker.
      const b = typed(id, 'B');
      const e = typed(id, 'E');
      this.child.stdin.write(`echo ${b} ; echo --err ${b} ; ${cmd} ; echo ${e} ; echo --err ${e}\n`);
    });
  }

  /** Ends the process (quit, then a kill if it lingers). */
  close(): void {
    this.dead ??= new SessionBroken('session closed');
    this.failPending(this.dead);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin.end('quit\n');
      setTimeout(() => this.child.kill('SIGKILL'), 2000).unref();
    }
  }

  private check(): void {
    const p = this.pending;
    if (!p) return;
    const out = between(this.out, marker(p.id, 'B'), marker(p.id, 'E'));
    const err = between(this.err, marker(p.id, 'B'), marker(p.id, 'E'));
    if (out === null || err === null) return;
    this.pending = null;
    clearTimeout(p.timer);
    this.idle();
    p.resolve({ stdout: out, stderr: err });
  }

  private failPending(cause: SessionBroken, timedOut = false): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    const e = new SessionBroken(cause.message);
    e.timedOut = timedOut;
    e.started = this.out.includes(marker(p.id, 'B'));
    p.reject(e);
  }

  // An idle session must not keep the process alive; a running command keeps it (its timer).
  private idle(): void {
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr])
      (s as { unref?: () => void }).unref?.();
  }

  private busyNow(): void {
    this.child.ref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr])
      (s as { ref?: () => void }).ref?.();
  }
}

function marker(id: number, kind: 'B' | 'E'): string {
  return `@@HAVEN-SESSION-${id}-${kind}@@`;
}

function typed(id: number, kind: 'B' | 'E'): string {
  return `'@@HAVEN-'SESSION-${id}-${kind}@@`;
}

/**
 * The text between the printed `begin` and `end` markers, once both arrived, or null. virsh -q
 * prints them without a newline on stdout; on stderr each is a line of its own behind "error: ".
 */
function between(text: string, begin: string, end: string): string | null {
  const b = text.indexOf(begin);
  if (b < 0) return null;
  let start = b + begin.length;
  if (text[start] === '\n') start++;
  const e = text.indexOf(end, start);
  if (e < 0) return null;
  let stop = e;
  if (text.startsWith('error: ', stop - 7) && (stop - 7 === start || text[stop - 8] === '\n')) stop -= 7;
  return text.slice(start, stop);
}
