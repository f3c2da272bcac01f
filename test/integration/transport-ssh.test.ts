/**
 * The ssh transport against a real sshd on loopback: the test starts its own `sshd -D -f` with
 * its own host key and authorized key on a free port (as root; killed in t.after), then replicates
 * through `ssh … haven receive --stdio`. Refusals: a key the target does not accept, an unknown
 * host key, a target without haven.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { HavenError } from '../../src/core/errors.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import { type Connection, HAVEN_BIN, openTarget, type TargetOptions } from '../../src/transport/index.ts';
import {
  C,
  checkGenerations,
  clone,
  content,
  makeMeta,
  type Op,
  sendDelta,
  TEST_ROOT,
  wholeDisks,
} from './protocol-helpers.ts';

const run = promisify(execFile);

async function sshdChildren(pid: number): Promise<number> {
  const r = await run('pgrep', ['-P', String(pid)]).catch(() => ({ stdout: '' }));
  return r.stdout.trim() ? r.stdout.trim().split('\n').length : 0;
}

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

describe('ssh transport to an sshd on loopback', () => {
  let dir = '';
  let port = 0;
  let sshd: ChildProcess | undefined;
  let sshOptions: string[] = [];
  const remoteCommand = `${process.execPath} ${HAVEN_BIN}`;

  before(async () => {
    const { mkdtemp } = await import('node:fs/promises');
    dir = await mkdtemp(join(TEST_ROOT, 'haven-t-proto-ssh-'));
    // sshd's compiled-in privilege separation directory (the openssh-server service makes it).
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    for (const k of ['host', 'client', 'stranger']) {
      await run('ssh-keygen', [
        '-q',
        '-t',
        'ed25519',
        '-N',
        '',
        '-C',
        `haven-t-proto-${k}`,
        '-f',
        join(dir, k),
      ]);
    }
    await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'client.pub')));
    await chmod(join(dir, 'authorized_keys'), 0o600);
    port = await freePort();
    await writeFile(
      join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host')}`,
        'PidFile none',
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        `SetEnv HAVEN_LOG_DIR=${join(dir, 'logs')}`,
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    const hostPub = (await readFile(join(dir, 'host.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
    await writeFile(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub}\n`);
    await writeFile(join(dir, 'empty_known_hosts'), '');
    sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sshd did not start: ${log}`)), 15_000);
      sshd!.stderr!.on('data', (b: Buffer) => {
        log += b.toString();
        if (log.includes('Server listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
      sshd!.on('exit', (code) => reject(new Error(`sshd exited ${code}: ${log}`)));
    });
    sshOptions = [
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
    ];
  });

  after(async () => {
    if (sshd && sshd.exitCode === null) {
      // Let the per-connection sshd processes finish first, so the listener reaps them (killed
      // earlier, they would be left to init as zombies).
      for (let i = 0; i < 50 && (await sshdChildren(sshd.pid!)) > 0; i++)
        await new Promise((r) => setTimeout(r, 100));
      sshd.kill('SIGTERM');
      await once(sshd, 'exit');
    }
    const { rm } = await import('node:fs/promises');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const url = (path: string) => `ssh://root@127.0.0.1:${port}${path}`;
  const opts = (o: Partial<TargetOptions> = {}): TargetOptions => ({ sshOptions, remoteCommand, ...o });

  it('replicates a full and an incremental delta through ssh', async () => {
    const store = join(dir, 'store');
    const disks = [{ name: 'vda', size: 32 * C + 4096 }];
    const conn = await openTarget(url(store), opts());
    assert.equal(conn.description, url(store));
    const sender = await StreamSender.connect(conn.stream);
    const source = { vda: content(1, disks[0]!.size) };
    await sender.open(makeMeta('web', disks));
    const g1 = (await sendDelta(sender, makeMeta('web', disks), source, wholeDisks(source)))!;
    const models = new Map([[g1.id, clone(source)]]);
    content(2, 3 * C).copy(source.vda, 8 * C);
    const meta = makeMeta('web', disks, { pointInTime: 'p2', baseGenerationId: g1.id, mode: 'incremental' });
    await sender.open(meta);
    const ops: Op[] = [{ disk: 'vda', kind: 'data', offset: 8 * C, length: 3 * C }];
    const g2 = (await sendDelta(sender, meta, source, ops))!;
    models.set(g2.id, clone(source));
    await sender.close();
    await conn.close();
    assert.deepEqual(await checkGenerations(await openFsStore(store), 'web', models), []);
    // The receiver ran in the ssh session (sshd set its log directory).
    const { readdir } = await import('node:fs/promises');
    assert.ok((await readdir(join(dir, 'logs'))).some((f) => f.startsWith('receive-')));
  });

  async function refusal(conn: Connection): Promise<HavenError | null> {
    const err = await StreamSender.connect(conn.stream, { handshakeTimeoutMs: 30_000 }).then(
      () => null,
      (e: HavenError) => e,
    );
    await conn.close();
    return err;
  }

  it('a key the target does not accept: TRANSPORT_SSH_FAILED', async () => {
    const stranger = sshOptions.map((o) => (o === join(dir, 'client') ? join(dir, 'stranger') : o));
    const err = await refusal(await openTarget(url(join(dir, 'nostore')), opts({ sshOptions: stranger })));
    assert.equal(err?.code, 'TRANSPORT_SSH_FAILED');
    assert.equal(err?.kind, 'unavailable');
    assert.match(err!.message, /Permission denied/);
  });

  it('an unknown host key: TRANSPORT_SSH_FAILED', async () => {
    const unknown = sshOptions.map((o) =>
      o.startsWith('UserKnownHostsFile=') ? `UserKnownHostsFile=${join(dir, 'empty_known_hosts')}` : o,
    );
    const err = await refusal(await openTarget(url(join(dir, 'nostore')), opts({ sshOptions: unknown })));
    assert.equal(err?.code, 'TRANSPORT_SSH_FAILED');
    assert.match(err!.message, /Host key verification failed/);
  });

  it('a target without haven: TRANSPORT_REMOTE_COMMAND_MISSING', async () => {
    const err = await refusal(
      await openTarget(url(join(dir, 'nostore')), opts({ remoteCommand: '/nonexistent/bin/haven' })),
    );
    assert.equal(err?.code, 'TRANSPORT_REMOTE_COMMAND_MISSING');
    assert.equal(err?.kind, 'unavailable');
  });

  it('nothing is written for refused connections', async () => {
    const { access } = await import('node:fs/promises');
    await assert.rejects(access(join(dir, 'nostore')));
  });
});
