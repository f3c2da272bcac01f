/**
 * The TLS listener as a real `haven receive --listen` process, with a throwaway CA made by the
 * openssl CLI: replication with client certificates and with a token, several sessions at once,
 * and the refusals (no or wrong token, an untrusted client certificate, no client certificate, a
 * target certificate the sender does not trust, plain TCP to the TLS port). The store is checked
 * after the refusals and the listener keeps serving.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { HavenError } from '../../src/core/errors.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import { HAVEN_BIN, openTarget, type TlsClientOptions } from '../../src/transport/index.ts';
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
const TOKEN = 'haven-t-proto-0123456789abcdef0123456789abcdef';

async function openssl(dir: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

/** A CA, a server certificate for 127.0.0.1/localhost, and client certificates. */
async function makePki(dir: string): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'otherca']) {
    await openssl(dir, [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=haven-t-proto-${ca}`,
    ]);
  }
  const leaf = async (name: string, ca: string, subj: string, ext: string[]) => {
    await openssl(dir, [
      'req',
      '-new',
      ...ec,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      subj,
      ...ext,
    ]);
    await openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      '2',
      '-copy_extensions',
      'copyall',
      '-out',
      `${name}.pem`,
    ]);
  };
  await leaf('server', 'ca', '/CN=localhost', [
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-addext',
    'extendedKeyUsage=serverAuth',
  ]);
  await leaf('client', 'ca', '/CN=haven-t-proto-sender', ['-addext', 'extendedKeyUsage=clientAuth']);
  await leaf('intruder', 'otherca', '/CN=haven-t-proto-intruder', ['-addext', 'extendedKeyUsage=clientAuth']);
}

interface Listener {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

async function startListener(dir: string, name: string, extra: string[]): Promise<Listener> {
  const child = spawn(
    process.execPath,
    [
      HAVEN_BIN,
      'receive',
      '--listen',
      '127.0.0.1:0',
      '--store',
      join(dir, `store-${name}`),
      '--tls-cert',
      join(dir, 'server.pem'),
      '--tls-key',
      join(dir, 'server.key'),
      ...extra,
    ],
    { env: { ...process.env, HAVEN_LOG_DIR: join(dir, `logs-${name}`) }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener did not start: ${err}`)), 20_000);
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', (code) => reject(new Error(`listener exited ${code}: ${err}`)));
  });
  return { child, port, stderr: () => err };
}

async function stopListener(l: Listener | undefined): Promise<number | null> {
  if (!l || l.child.exitCode !== null) return l?.child.exitCode ?? null;
  l.child.kill('SIGTERM');
  const [code] = (await once(l.child, 'exit')) as [number | null];
  return code;
}

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
    certs = await startListener(dir, 'certs', ['--tls-ca', join(dir, 'ca.pem')]);
    token = await startListener(dir, 'token', ['--token-file', join(dir, 'token')]);
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
    assert.match(certs!.stderr(), /refused a connection .*haven-t-proto-intruder/);
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
