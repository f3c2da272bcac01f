/**
 * Running commands on a host: this machine (`bash -c`), or one reached with the system ssh
 * client (`ssh … bash -c`), so the operator's ~/.ssh/config, keys and known_hosts apply. The
 * remote script's exit status travels as a marker line on stderr: ssh's own 255 (cannot connect,
 * host key, authentication) is then never confused with a remote command that exits 255 (ReaR
 * does), and an unreachable host is `HOST_UNREACHABLE` with what ssh said.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { HostEndpoint } from '../core/config.ts';
import { HavenError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { sshPeerArgs } from '../transport/index.ts';
import { hostError } from './errors.ts';

const EXIT_MARKER = 'haven-exit:';
/** stderr kept per command: enough for ReaR's messages, bounded whatever a command prints. */
const STDERR_KEEP = 64 * 1024;

export interface ShellResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  /** Each stderr line as it arrives (ReaR's progress with -v). */
  onStderrLine?: (line: string) => void;
}

/** A command whose stdout is a byte stream (a file being sent), and its outcome. */
export interface StreamingCommand {
  stdout: Readable;
  /** Resolves when the command ended: its exit code and what it said on stderr. */
  done: Promise<ShellResult>;
  kill(): void;
}

export class HostShell {
  constructor(
    readonly name: string,
    readonly endpoint: HostEndpoint,
    private readonly sshOptions: string[] = [],
    private readonly log: Logger = silentLogger,
  ) {}

  /** Where the host is, for messages: `local` or `ssh://user@host`. */
  get where(): string {
    const e = this.endpoint;
    return e.kind === 'local'
      ? 'this machine'
      : `ssh://${e.user ? `${e.user}@` : ''}${e.host}${e.port ? `:${e.port}` : ''}`;
  }

  private argv(script: string): [string, string[]] {
    // The status line goes out last, after the script's own stderr; `exit 0` keeps ssh's 255 ours.
    // In a subshell, so that an `exit` in the script still reaches the status line.
    const wrapped = `(\n${script}\n)\nhaven_rc=$?\nprintf '\\n${EXIT_MARKER}%d\\n' "$haven_rc" >&2\nexit 0`;
    const e = this.endpoint;
    if (e.kind === 'local') return ['bash', ['-c', wrapped]];
    // The same ssh options as a replication's peer (transport/child.ts); the remote command is
    // `bash -c '<script>'`.
    return ['ssh', sshPeerArgs(e, ['-c', wrapped], { remoteCommand: 'bash', sshOptions: this.sshOptions })];
  }

  private start(
    script: string,
    o: RunOptions,
  ): { child: ChildProcessWithoutNullStreams; done: Promise<ShellResult> } {
    const [cmd, args] = this.argv(script);
    this.log.debug('host command', { host: this.name, script: script.slice(0, 500) });
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let pending = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_KEEP);
      pending += s;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) if (!l.startsWith(EXIT_MARKER)) o.onStderrLine?.(l);
    });
    child.stdin.on('error', () => {});
    child.stdin.end(o.input);
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<ShellResult>((resolve, reject) => {
      if (o.timeoutMs) {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(
            hostError(
              'HOST_COMMAND_TIMEOUT',
              'unavailable',
              `a command on host ${this.name} did not end within ${Math.round(o.timeoutMs! / 1000)} s`,
              {
                hint: `Check that ${this.where} is responsive; the command was stopped.`,
                details: { host: this.name },
              },
            ),
          );
        }, o.timeoutMs);
      }
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new HavenError('TOOL_MISSING', `${cmd} cannot be run: ${e.message}`, {
            kind: 'unavailable',
            hint: `Install ${cmd === 'ssh' ? 'openssh-client' : cmd} on this machine.`,
          }),
        );
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        // outcome() throws for an unreachable host: a rejection, not an uncaught exception.
        try {
          resolve(this.outcome(code ?? -1, stderr));
        } catch (e) {
          reject(e);
        }
      });
    });
    return { child, done };
  }

  /** The script's exit code from its marker; ssh failing before the script ran is HOST_UNREACHABLE. */
  private outcome(code: number, stderr: string): ShellResult {
    const at = stderr.lastIndexOf(`\n${EXIT_MARKER}`);
    if (at >= 0) {
      const rc = Number.parseInt(stderr.slice(at + 1 + EXIT_MARKER.length), 10);
      return { code: rc, stdout: '', stderr: stderr.slice(0, at) };
    }
    if (this.endpoint.kind === 'ssh' && code === 255) {
      const said = stderr.trim().split('\n').slice(-3).join(' ');
      throw hostError(
        'HOST_UNREACHABLE',
        'unavailable',
        `cannot reach host ${this.name} at ${this.where}: ${said || 'ssh failed'}`,
        {
          hint: `Check that ${this.where} is up and that \`ssh ${this.endpoint.user ? `${this.endpoint.user}@` : ''}${this.endpoint.host}\` logs in without a password (hosts.${this.name}.ssh.options for keys and options).`,
          details: { host: this.name, where: this.where, ssh: stderr.slice(-2000) },
        },
      );
    }
    return { code: code === 0 ? -1 : code, stdout: '', stderr };
  }

  /** Runs a bash script on the host to its end; rejects only when it could not run at all. */
  async run(script: string, o: RunOptions = {}): Promise<ShellResult> {
    const { child, done } = this.start(script, o);
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    const r = await done;
    return { ...r, stdout: Buffer.concat(out).toString('utf8') };
  }

  /** Starts a bash script whose stdout is read as a stream (never held whole). */
  stream(script: string, o: RunOptions = {}): StreamingCommand {
    const { child, done } = this.start(script, o);
    done.catch(() => {});
    return { stdout: child.stdout, done, kill: () => child.kill('SIGTERM') };
  }
}
