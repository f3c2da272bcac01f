/**
 * Issue 3: the same replication through `ssh://` to a real sshd on loopback (the operator's
 * ssh client and keys; `haven receive --stdio` runs in the ssh session) and through the TLS
 * listener (`haven receive --listen`, with client certificates, and with a token), compression
 * on. test/helpers/rounds.ts checks names, content, bytes sent and the definition after each run.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, havenJson } from '../helpers/haven.ts';
import { type Round, replicationRounds } from '../helpers/rounds.ts';
import { startSshd } from '../helpers/sshd.ts';
import { makePki, startListener, stopListener } from '../helpers/tls.ts';

const PREFIX = 'haven-t-remote';
const ROUNDS: Round[] = [
  [
    ['vda', 11, 40],
    ['vdb', 12, 10],
  ],
  [['vda', 13, 25]],
  [['vdb', 14, 8]],
];

test('through ssh:// to an sshd on loopback', async (t) => {
  const dir = await testDir(t, `${PREFIX}-ssh`);
  await mkdir(join(dir, 'ssh'));
  const sshd = await startSshd(join(dir, 'ssh'), { logDir: join(dir, 'remote-logs') });
  t.after(() => sshd.stop());
  const h = await havenEnv(dir);
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 48 }, { sizeMiB: 16 }],
    cdrom: 'iso',
  });
  const results = await replicationRounds({
    h,
    guest,
    store,
    dir,
    copies: 2,
    rounds: ROUNDS,
    protectArgs: [
      '--to',
      sshd.url(store),
      '--compress',
      '3',
      '--remote-command',
      `${process.execPath} ${HAVEN_BIN}`,
      // `=` keeps commander from reading ssh's own flags (-i, -o) as haven's.
      ...sshd.sshOptions.map((o) => `--ssh-option=${o}`),
    ],
  });
  assert.ok(
    results[0]!.bytesSent < results[0]!.disks.reduce((n, d) => n + d.dataBytes, 0),
    'zstd shrank the stream',
  );
  const v = await havenJson<{ ok: boolean }>(h, ['verify', '--store', store]);
  assert.equal(v.ok, true);
});

for (const auth of ['client certificates', 'token'] as const) {
  test(`through the TLS listener with ${auth}`, async (t) => {
    const dir = await testDir(t, `${PREFIX}-tls`);
    const pki = join(dir, 'pki');
    await mkdir(pki);
    await makePki(pki);
    await writeFile(join(pki, 'token'), 'haven-test-token-4f1d0c8e9b2a7d6c5e4f3a2b1c0d9e8f\n');
    await chmod(join(pki, 'token'), 0o600);
    const store = join(dir, 'store');
    const listener = await startListener(
      pki,
      store,
      auth === 'token' ? ['--token-file', join(pki, 'token')] : ['--tls-ca', join(pki, 'ca.pem')],
      { HAVEN_LOG_DIR: join(dir, 'listener-logs') },
    );
    t.after(() => stopListener(listener));
    const h = await havenEnv(dir);
    const guest = await createTestGuest(t, {
      prefix: PREFIX,
      disks: [{ sizeMiB: 48 }, { sizeMiB: 16 }],
      cdrom: 'iso',
    });
    await replicationRounds({
      h,
      guest,
      store,
      dir,
      copies: 2,
      rounds: ROUNDS,
      protectArgs: [
        '--to',
        `tls://127.0.0.1:${listener.port}`,
        '--tls-ca',
        join(pki, 'ca.pem'),
        ...(auth === 'token'
          ? ['--token-file', join(pki, 'token')]
          : ['--tls-cert', join(pki, 'client.pem'), '--tls-key', join(pki, 'client.key')]),
      ],
    });
    const v = await havenJson<{ ok: boolean }>(h, ['verify', '--store', store]);
    assert.equal(v.ok, true);
  });
}
