/**
 * A real sshd on loopback for tests: its own host key, an authorized client key, a free port,
 * started as root with `sshd -D -f <config>`; the ssh options that reach it with strict host key
 * checking. Stopped (after its per-connection children finish) by `stop()`.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

async function children(pid: number): Promise<number> {
  const r = await run('pgrep', ['-P', String(pid)]).catch(() => ({ stdout: '' }));
  return r.stdout.trim() ? r.stdout.trim().split('\n').length : 0;
}

export interface TestSshd {
  port: number;
  dir: string;
  /** ssh options that authenticate with the client key and check the host key strictly. */
  sshOptions: string[];
  /** `ssh://root@<address>:<port><path>` */
  url(path: string): string;
  stop(): Promise<void>;
}

/**
 * Starts sshd with keys in `dir` (which must exist). `logDir` becomes HAVEN_LOG_DIR of the
 * sessions, so receivers started through ssh log there. Extra key names (e.g. "stranger") are
 * generated too, unauthorized.
 */
export async function startSshd(
  dir: string,
  options: {
    logDir?: string;
    extraKeys?: string[];
    /** The address it listens on (default 127.0.0.1), e.g. a test bridge's for a guest to reach. */
    listenAddress?: string;
  } = {},
): Promise<TestSshd> {
  const address = options.listenAddress ?? '127.0.0.1';
  // sshd's compiled-in privilege separation directory (the openssh-server service makes it).
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  for (const k of ['host', 'client', ...(options.extraKeys ?? [])]) {
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `haven-test-${k}`, '-f', join(dir, k)]);
  }
  await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'client.pub')));
  await chmod(join(dir, 'authorized_keys'), 0o600);
  const port = await freePort();
  await writeFile(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      `ListenAddress ${address}`,
      `HostKey ${join(dir, 'host')}`,
      'PidFile none',
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      ...(options.logDir ? [`SetEnv HAVEN_LOG_DIR=${options.logDir}`] : []),
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  const hostPub = (await readFile(join(dir, 'host.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
  await writeFile(join(dir, 'known_hosts'), `[${address}]:${port} ${hostPub}\n`);
  await writeFile(join(dir, 'empty_known_hosts'), '');
  const sshd: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start: ${log}`)), 15_000);
    sshd.stderr!.on('data', (b: Buffer) => {
      log += b.toString();
      if (log.includes('Server listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    sshd.on('exit', (code) => reject(new Error(`sshd exited ${code}: ${log}`)));
  });
  return {
    port,
    dir,
    sshOptions: [
      '-F',
      '/dev/null',
      '-i',
      join(dir, 'client'),
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'ConnectTimeout=10',
    ],
    url: (path) => `ssh://root@${address}:${port}${path}`,
    async stop() {
      if (sshd.exitCode !== null) return;
      // Let the per-connection sshd processes finish first, so the listener reaps them (killed
      // earlier, they would be left to init as zombies).
      for (let i = 0; i < 50 && (await children(sshd.pid!)) > 0; i++)
        await new Promise((r) => setTimeout(r, 100));
      sshd.kill('SIGTERM');
      await once(sshd, 'exit');
    },
  };
}
