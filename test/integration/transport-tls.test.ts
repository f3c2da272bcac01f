/**
 * The TLS listener as a real `haven receive --listen` process, with a throwaway CA made by the
 * openssl CLI: replication with client certificates and with a token, several sessions at once,
 * and the refusals (no or wrong token, an untrusted client certificate, no client certificate, a
 * target certificate the sender does not trust, plain TCP to the TLS port). The store is checked
 * after the refusals and the listener keeps serving.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { HavenError } from '../../src/core/errors.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import { openTarget, type TlsClientOptions } from '../../src/transport/index.ts';
import { type Listener, makePki, startListener, stopListener } from '../helpers/tls.ts';
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

const _run = promisify(execFile);
const TOKEN = 'haven-t-proto-0123456789abcdef0123456789abcdef';

describe('TLS listener (haven receive --listen)', () => {
  let dir = '';
  let certs: Listener | undefined;
  let token: Listener | undefined;
  const disks = [{ name: 'vda', size: 24 * C + 512 }];

  before(async () => {
    dir = await mkdtemp(join(TEST_ROOT, 'haven-t-proto-tls-'));
    await makePki(dir);
    await writeFile(join(dir, 'token'), `${TOKEN}\n`);
    await chmod(join(dir, 'token'), 0o600);
    certs = await startListener(dir, join(dir, 'store-certs'), ['--tls-ca', join(dir, 'ca.pem')], {
      HAVEN_LOG_DIR: join(dir, 'logs-certs'),
    });
    token = await startListener(dir, join(dir, 'store-token'), ['--token-file', join(dir, 'token')], {
      HAVEN_LOG_DIR: join(dir, 'logs-token'),
    });
  });

  after(async () => {
    await stopListener(certs);
    await stopListener(token);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tlsOptions = (o: Partial<TlsClientOptions> = {}): TlsClientOptions => ({
    ca: join(dir, 'ca.pem'),
    cert: join(dir, 'client.pem'),
    key: join(dir, 'client.key'),
    ...o,
  });

  async function replicate(port: number, server: string, tls: TlsClientOptions, senderToken?: string) {
    const conn = await openTarget(`tls://127.0.0.1:${port}`, { tls });
    const sender = await StreamSender.connect(conn.stream, senderToken ? { token: senderToken } : {});
    const source = { vda: content(server.length, disks[0]!.size) };
    await sender.open(makeMeta(server, disks));
    const g1 = (await sendDelta(sender, makeMeta(server, disks), source, wholeDisks(source)))!;
    const models = new Map([[g1.id, clone(source)]]);
    content(99, C).copy(source.vda, 3 * C);
    const meta = makeMeta(server, disks, { pointInTime: 'p2', baseGenerationId: g1.id, mode: 'incremental' });
    await sender.open(meta);
    const ops: Op[] = [{ disk: 'vda', kind: 'data', offset: 3 * C, length: C }];
    const g2 = (await sendDelta(sender, meta, source, ops))!;
    models.set(g2.id, clone(source));
    await sender.close();
    await conn.close();
    return models;
  }

  async function refused(
    port: number,
    tls: TlsClientOptions,
    senderToken?: string,
  ): Promise<HavenError | null> {
    let conn: Awaited<ReturnType<typeof openTarget>>;
    try {
      conn = await openTarget(`tls://127.0.0.1:${port}`, { tls });
    } catch (e) {
      return e as HavenError;
    }
    const err = await StreamSender.connect(conn.stream, senderToken ? { token: senderToken } : {}).then(
      () => null,
      (e: HavenError) => e,
    );
    await conn.close();
    return err;
  }

  it('replicates with client certificates, several sessions at once', async () => {
    const [web, db] = await Promise.all([
      replicate(certs!.port, 'web', tlsOptions()),
      replicate(certs!.port, 'db', tlsOptions()),
    ]);
    const store = await openFsStore(join(dir, 'store-certs'));
    assert.deepEqual(await checkGenerations(store, 'web', web), []);
    assert.deepEqual(await checkGenerations(store, 'db', db), []);
  });

  it('refuses a client certificate from another CA, and no client certificate', async () => {
    const intruder = await refused(
      certs!.port,
      tlsOptions({ cert: join(dir, 'intruder.pem'), key: join(dir, 'intruder.key') }),
    );
    assert.equal(intruder?.code, 'PROTO_AUTH_FAILED');
    assert.equal(intruder?.kind, 'refused');
    assert.match(intruder!.message, /client certificate not accepted/);
    const anonymous = await refused(certs!.port, { ca: join(dir, 'ca.pem') });
    assert.equal(anonymous?.code, 'PROTO_AUTH_FAILED');
    assert.match(certs!.stderr(), /refused a connection .*haven-test-intruder/);
  });

  it('refuses a target whose certificate the sender does not trust', async () => {
    const err = await refused(certs!.port, tlsOptions({ ca: join(dir, 'otherca.pem') }));
    assert.equal(err?.code, 'TRANSPORT_TLS_FAILED');
    assert.match(err!.message, /certificate/i);
  });

  it('answers plain TCP on the TLS port with nothing a sender accepts', async (t) => {
    const socket = netConnect(certs!.port, '127.0.0.1');
    await once(socket, 'connect');
    const err = await StreamSender.connect(socket, { handshakeTimeoutMs: 20_000 }).then(
      () => null,
      (e: HavenError) => e,
    );
    socket.destroy();
    assert.ok(err, 'a plain TCP session must fail');
    t.diagnostic(`plain TCP: ${err.code}: ${err.message}`);
    assert.match(err.code, /^PROTO_(BAD_MAGIC|CONNECTION_LOST)$/);
  });

  it('requires the token on a token listener', async () => {
    const tls = { ca: join(dir, 'ca.pem') };
    const missing = await refused(token!.port, tls);
    assert.equal(missing?.code, 'PROTO_AUTH_FAILED');
    assert.equal(missing?.kind, 'refused');
    const wrong = await refused(token!.port, tls, `${TOKEN}x`);
    assert.equal(wrong?.code, 'PROTO_AUTH_FAILED');
    const models = await replicate(token!.port, 'web', tls, TOKEN);
    assert.deepEqual(await checkGenerations(await openFsStore(join(dir, 'store-token')), 'web', models), []);
  });

  it('after the refusals the stores verify and the listener still serves', async () => {
    const store = await openFsStore(join(dir, 'store-certs'));
    assert.deepEqual((await store.listServers()).sort(), ['db', 'web']);
    assert.ok((await store.verify()).ok);
    const models = await replicate(certs!.port, 'app', tlsOptions());
    assert.deepEqual(await checkGenerations(store, 'app', models), []);
  });

  it('stops cleanly on SIGTERM with exit code 0 and a run log', async () => {
    assert.equal(await stopListener(certs), 0);
    assert.equal(await stopListener(token), 0);
    assert.ok((await readdir(join(dir, 'logs-certs'))).some((f) => f.startsWith('receive-')));
  });
});
