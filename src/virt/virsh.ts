/**
 * Running virsh. Every libvirt call in Haven goes through here: one place that picks the URI,
 * forces the C locale (so error text can be classified), applies a timeout and turns failures
 * into VirtErrors.
 *
 * `batch()` runs many virsh commands in one process (virsh accepts `cmd1; cmd2; …`): listing a
 * few hundred servers then costs a handful of connections instead of a thousand.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HavenError } from '../core/errors.ts';
import { CommandError, exec } from '../core/exec.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { VirtError, virshError, virshErrorText } from './errors.ts';
import { quoteVirshArg } from './virsh-quote.ts';
import { SessionBroken, type SessionResult, VirshSession } from './virsh-session.ts';

export { quoteVirshArg };

export const DEFAULT_LIBVIRT_URI = 'qemu:///system';

/** The URI to use: the caller's, else $HAVEN_LIBVIRT_URI, else qemu:///system. */
export function libvirtUri(uri?: string, env: NodeJS.ProcessEnv = process.env): string {
  return uri || env.HAVEN_LIBVIRT_URI || DEFAULT_LIBVIRT_URI;
}

export interface VirshOptions {
  uri?: string;
  log?: Logger;
  /** Per-call limit unless the call gives its own (default 120 s). */
  timeoutMs?: number;
  /**
   * Run commands through one long-lived virsh process while it is free (virsh-session.ts); a
   * command issued while it is busy runs in a process of its own. Call close() when done.
   */
  session?: boolean;
}

export interface RunOptions {
  timeoutMs?: number;
}

export interface BatchResult {
  ok: boolean;
  stdout: string;
  /** The "error: …" text when the command failed. */
  error: string | undefined;
}

const MARK = '@@HAVEN-BATCH-';
/** virsh takes the whole script as one argument, and Linux caps one argument at 128 KiB. */
const MAX_SCRIPT = 96 * 1024;

export class Virsh {
  readonly uri: string;
  readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly useSession: boolean;
  private session: VirshSession | null = null;

  constructor(options: VirshOptions = {}) {
    this.uri = libvirtUri(options.uri);
    this.log = options.log ?? silentLogger;
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.useSession = options.session ?? false;
  }

  /** Ends the session process, if any (later calls start a new one). */
  close(): void {
    this.session?.close();
    this.session = null;
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, LC_ALL: 'C', LANG: 'C' };
  }

  /** Runs one virsh command and returns its stdout; throws a classified VirtError on failure. */
  async run(args: readonly string[], options: RunOptions = {}): Promise<string> {
    const argv = ['-c', this.uri, ...args];
    this.log.debug('virsh', { args });
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const session = this.freeSession();
    if (session) {
      const r = await this.inSession(session, args, timeoutMs);
      if (r) {
        if (/^error: /m.test(r.stderr)) throw virshError(args, r.stderr, 1);
        return r.stdout;
      }
    }
    try {
      const r = await exec('virsh', argv, {
        env: this.env(),
        timeoutMs,
      });
      return r.stdout;
    } catch (e) {
      throw this.translate(e, args);
    }
  }

  /**
   * Runs a command that reads XML documents from files (define, create, checkpoint-create,
   * backup-begin). The documents go in a private temporary directory removed afterwards: virsh
   * cannot read /dev/stdin when our stdin is a socket, as Node gives child processes.
   */
  async runWithFiles(
    documents: Record<string, string>,
    args: (paths: Record<string, string>) => readonly string[],
    options: RunOptions = {},
  ): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'haven-virsh-'));
    try {
      const paths: Record<string, string> = {};
      for (const [name, text] of Object.entries(documents)) {
        const p = join(dir, `${name}.xml`);
        await writeFile(p, text, { mode: 0o600 });
        paths[name] = p;
      }
      return await this.run(args(paths), options);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The session, started when needed, while it is free; null without session mode or while busy. */
  private freeSession(): VirshSession | null {
    if (!this.useSession) return null;
    if (!this.session?.alive) this.session = new VirshSession(this.uri, this.env());
    return this.session.busy ? null : this.session;
  }

  /**
   * One command through the session: what it printed, or null when the session broke before the
   * command began (the caller then runs it on its own).
   */
  private async inSession(
    session: VirshSession,
    args: readonly string[],
    timeoutMs: number,
  ): Promise<SessionResult | null> {
    try {
      const r = await session.run(args, timeoutMs);
      // After libvirtd restarted, virsh reconnects and says so as an error; the command ran.
      return { stdout: r.stdout, stderr: r.stderr.replace(/^error: Reconnected to the hypervisor\n/m, '') };
    } catch (e) {
      if (!(e instanceof SessionBroken)) throw e;
      if (this.session === session) this.session = null;
      if (e.timedOut) {
        throw new VirtError(
          'VIRT_TIMEOUT',
          `virsh ${args[0] ?? ''} did not finish in time (libvirt ${this.uri})`,
          {
            details: { args: [...args] },
            cause: e,
          },
        );
      }
      if (!e.started) return null;
      throw new VirtError('VIRT_COMMAND_FAILED', `virsh ${args[0] ?? ''}: ${e.message}`, {
        details: { args: [...args] },
        cause: e,
      });
    }
  }

  /**
   * A batch as session commands one after another (2–3 ms each, against 20–40 ms for a virsh
   * process of its own); what the session could not begin runs as a script.
   */
  private async batchInSession(
    session: VirshSession,
    commands: ReadonlyArray<readonly string[]>,
  ): Promise<BatchResult[]> {
    this.log.debug('virsh batch', { commands: commands.length, session: true });
    const results: BatchResult[] = [];
    for (const args of commands) {
      const r = await this.inSession(session, args, this.timeoutMs);
      if (r === null) return [...results, ...(await this.batchByScript(commands.slice(results.length)))];
      const e = virshErrorText(r.stderr);
      results.push({ ok: e.length === 0, stdout: r.stdout, error: e.length > 0 ? e : undefined });
    }
    return results;
  }

  private translate(e: unknown, args: readonly string[]): unknown {
    if (e instanceof CommandError) return virshError(args, e.result.stderr, e.result.code);
    if (e instanceof HavenError && e.code === 'COMMAND_TIMEOUT') {
      return new VirtError(
        'VIRT_TIMEOUT',
        `virsh ${args[0] ?? ''} did not finish in time (libvirt ${this.uri})`,
        {
          details: { args: [...args] },
          cause: e,
        },
      );
    }
    return e;
  }

  /**
   * Runs several commands: through the session when there is a free one, else in as few virsh
   * processes as fit, each command's output and error kept apart by markers. A failing command
   * does not stop the others (virsh goes on after errors in a script); a connection failure fails
   * the whole batch.
   */
  async batch(commands: ReadonlyArray<readonly string[]>): Promise<BatchResult[]> {
    const session = this.freeSession();
    return session ? this.batchInSession(session, commands) : this.batchByScript(commands);
  }

  private async batchByScript(commands: ReadonlyArray<readonly string[]>): Promise<BatchResult[]> {
    const results: BatchResult[] = [];
    let start = 0;
    while (start < commands.length) {
      const parts: string[] = [];
      let size = 0;
      let end = start;
      while (end < commands.length) {
        const cmd = (commands[end] as readonly string[]).map(quoteVirshArg).join(' ');
        const part = `echo ${MARK}${end}@@; echo --err ${MARK}${end}@@; ${cmd}`;
        if (parts.length > 0 && size + part.length > MAX_SCRIPT) break;
        parts.push(part);
        size += part.length + 3;
        end++;
      }
      results.push(...(await this.runScript(parts.join(' ; '), start, end)));
      start = end;
    }
    return results;
  }

  private async runScript(script: string, first: number, end: number): Promise<BatchResult[]> {
    const argv = ['-c', this.uri, script];
    this.log.debug('virsh batch', { commands: end - first });
    let stdout: string;
    let stderr: string;
    try {
      const r = await exec('virsh', argv, { env: this.env(), timeoutMs: this.timeoutMs, okCodes: [0, 1] });
      stdout = r.stdout;
      stderr = r.stderr;
    } catch (e) {
      throw this.translate(e, ['batch']);
    }
    const out = splitByMarker(stdout);
    const err = splitByMarker(stderr);
    // Nothing ran at all: virsh could not connect (or the script did not parse).
    if (!out.has(first)) throw virshError(['batch'], stderr, 1);
    const results: BatchResult[] = [];
    for (let i = first; i < end; i++) {
      const e = virshErrorText(err.get(i) ?? '');
      results.push({ ok: e.length === 0, stdout: out.get(i) ?? '', error: e.length > 0 ? e : undefined });
    }
    return results;
  }
}

/** Splits a stream at marker lines ("@@HAVEN-BATCH-n@@", on stderr prefixed "error: "). */
function splitByMarker(text: string): Map<number, string> {
  const parts = new Map<number, string>();
  let current: number | undefined;
  let lines: string[] = [];
  const flush = () => {
    if (current !== undefined) parts.set(current, lines.join('\n'));
  };
  for (const line of text.split('\n')) {
    const m = /^(?:error: )?@@HAVEN-BATCH-(\d+)@@$/.exec(line.trim());
    if (m) {
      flush();
      current = Number(m[1]);
      lines = [];
    } else {
      lines.push(line);
    }
  }
  flush();
  return parts;
}

/** Turns a failed batch result into the same error `run()` would have thrown. */
export function batchError(args: readonly string[], result: BatchResult): VirtError {
  return virshError(args, `error: ${result.error ?? 'unknown error'}`, 1);
}
