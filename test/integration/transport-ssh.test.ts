/**
 * The ssh transport against a real sshd on loopback: the test starts its own `sshd -D -f` with
 * its own host key and authorized key on a free port (as root; killed in t.after), then replicates
 * through `ssh … haven receive --stdio`. Refusals: a key the target does not accept, an unknown
 * host key, a target without haven.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { HavenError } from '../../src/core/errors.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import { type Connection, HAVEN_BIN, openTarget, type TargetOptions } from '../../src/transport/index.ts';
import { startSshd, type TestSshd } from '../helpers/sshd.ts';
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

describe('ssh transport to an sshd on loopback', () => {
  let dir = '';
  let port = 0;
  let sshOptions: string[] = [];
  const remoteCommand = `${process.execPath} ${HAVEN_BIN}`;

  let server: TestSshd | undefined;

  before(async () => {
    const { mkdtemp } = await import('node:fs/promises');
    dir = await mkdtemp(join(TEST_ROOT, 'haven-t-proto-ssh-'));
    server = await startSshd(dir, { logDir: join(dir, 'logs'), extraKeys: ['stranger'] });
    port = server.port;
    sshOptions = server.sshOptions;
  });

  after(async () => {
    await server?.stop();
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
