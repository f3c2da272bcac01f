/**
 * The TLS listener (a real `haven receive --listen`) against peers that misbehave or are merely
 * unlucky: a TCP connection that never starts TLS, too many connections from one address and in
 * all, a stop signal while connections hang, and certificates that expired or soon will (on the
 * listener's side and the sender's). Connections come from several loopback addresses
 * (127.0.0.1–3) so the per-address and total limits can be told apart.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import type { HavenError } from '../../src/core/errors.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openTarget } from '../../src/transport/index.ts';
import { captureLog } from '../helpers/capture-log.ts';
import { type Listener, makePki, startListener, stopListener, stopWithin } from '../helpers/tls.ts';
import { C, content, makeMeta, TEST_ROOT } from './protocol-helpers.ts';

const TOKEN = 'haven-t-limits-0123456789abcdef0123456789abcdef';

/** A plain TCP connection that sends nothing; `closed` resolves with ms from open to close. */
async function silent(port: number, localAddress: string) {
  const socket = netConnect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  await once(socket, 'connect');
  const t0 = Date.now();
  const closed = once(socket, 'close').then(() => Date.now() - t0);
  return { socket, closed };
}

/** Resolves to ms until `closed` resolves, or 'open' if it is still open after `ms`. */
async function closedWithin(closed: Promise<number>, ms: number): Promise<number | 'open'> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    closed,
    new Promise<'open'>((res) => {
      timer = setTimeout(() => res('open'), ms);
    }),
  ]);
  clearTimeout(timer);
  return r;
}

/** The server has accepted what the client connected (its 'connection' handler has run). */
const accepted = () => new Promise((r) => setTimeout(r, 300));

describe('TLS listener limits, stop and certificate expiry', () => {
  let dir = '';
  let listener: Listener | undefined;
  const disk = { name: 'vda', size: 16 * C };

  before(async () => {
    dir = await mkdtemp(join(TEST_ROOT, 'haven-t-proto-tls-limits-'));
    await makePki(dir);
    await writeFile(join(dir, 'token'), `${TOKEN}\n`);
    await chmod(join(dir, 'token'), 0o600);
    listener = await startListener(
      dir,
      join(dir, 'store'),
      [
        '--token-file',
        join(dir, 'token'),
        '--max-connections',
        '3',
        '--max-connections-per-peer',
        '2',
        '--handshake-timeout',
        '2s',
        '--stop-grace',
        '2s',
      ],
      { HAVEN_LOG_DIR: join(dir, 'logs') },
    );
  });

  after(async () => {
    await stopListener(listener);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A session from `localAddress` (the token authenticates it). */
  async function session(localAddress: string): Promise<{ sender: StreamSender; socket: Socket }> {
    const raw = netConnect({ port: listener!.port, host: '127.0.0.1', localAddress });
    await once(raw, 'connect');
    const socket = tlsConnect({ socket: raw, host: 'localhost', ca: readFileSync(join(dir, 'ca.pem')) });
    await once(socket, 'secureConnect');
    const sender = await StreamSender.connect(socket, { token: TOKEN });
    return { sender, socket };
  }

  it('closes a connection that never starts TLS when the handshake times out', async () => {
    const { closed } = await silent(listener!.port, '127.0.0.1');
    const ms = await closedWithin(closed, 15_000);
    assert.notEqual(ms, 'open', 'a connection without a ClientHello must not be kept');
    assert.ok((ms as number) >= 1500 && (ms as number) < 10_000, `closed after ${ms} ms`);
    assert.match(listener!.stderr(), /refused a connection from 127\.0\.0\.1: .*(timeout|timed out)/i);
  });

  it('caps connections per peer address and in total, and logs refusals once a minute per peer', async () => {
    const a = await silent(listener!.port, '127.0.0.1');
    const b = await silent(listener!.port, '127.0.0.1');
    await accepted();
    const over: number[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await silent(listener!.port, '127.0.0.1');
      const ms = await closedWithin(c.closed, 1500);
      assert.notEqual(ms, 'open', 'a third connection from one address must be closed at once');
      over.push(ms as number);
    }
    const perPeer =
      /refused a connection from 127\.0\.0\.1: 2 connections from 127\.0\.0\.1 are open \(at most 2 per peer address\)/g;
    assert.equal(listener!.stderr().match(perPeer)?.length, 1, 'one line for three refusals');

    // Another address still gets in, up to the total.
    const s = await session('127.0.0.2');
    await s.sender.query('web');
    const d = await silent(listener!.port, '127.0.0.3');
    assert.notEqual(await closedWithin(d.closed, 1500), 'open', 'a fourth connection must be closed at once');
    assert.match(
      listener!.stderr(),
      /refused a connection from 127\.0\.0\.3: 3 connections are open \(at most 3\)/,
    );

    // Places are given back when connections close.
    await s.sender.close();
    s.socket.destroy();
    a.socket.destroy();
    b.socket.destroy();
    await Promise.all([a.closed, b.closed]);
    await accepted();
    const again = await session('127.0.0.1');
    assert.equal(await again.sender.query('web'), null);
    await again.sender.close();
    again.socket.destroy();
  });

  it('warns at start when its certificate expires soon, and errs when it has expired', async (t) => {
    // makePki's certificates are valid for 2 days: within the 30-day warning.
    assert.match(
      listener!.stderr(),
      /TLS certificate file \S+server\.pem \(CN=localhost\) expires at \S+, in [01] day\(s\)/,
    );
    const expired = await startListener(
      dir,
      join(dir, 'store-expired'),
      ['--tls-ca', join(dir, 'ca.pem')],
      { HAVEN_LOG_DIR: join(dir, 'logs-expired') },
      'expired',
    );
    t.after(() => stopListener(expired));
    assert.match(expired.stderr(), /TLS certificate file \S+expired\.pem \(CN=localhost\) expired at /);
    assert.match(expired.stderr(), /TLS CA file \S+ca\.pem \(CN=haven-test-ca\) expires at /);
    const err = await openTarget(`tls://127.0.0.1:${expired.port}`, {
      tls: { ca: join(dir, 'ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client.key') },
    }).then(
      () => null,
      (e: HavenError) => e,
    );
    assert.equal(err?.code, 'TRANSPORT_TLS_FAILED');
    assert.match(err!.hint ?? '', /expired/);
  });

  it('the sender warns about its CA, its client certificate and the target’s certificate, once per log', async () => {
    const log = captureLog();
    const tls = { ca: join(dir, 'ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client.key') };
    for (let i = 0; i < 2; i++) {
      const conn = await openTarget(`tls://127.0.0.1:${listener!.port}`, { tls, log });
      const sender = await StreamSender.connect(conn.stream, { token: TOKEN });
      await sender.close();
      await conn.close();
    }
    const about = (re: RegExp) => log.lines.filter((l) => re.test(l)).length;
    assert.equal(about(/^TLS CA file \S+ca\.pem \(CN=haven-test-ca\) expires at/), 1, log.lines.join('\n'));
    assert.equal(about(/^TLS certificate file \S+client\.pem \(CN=haven-test-sender\) expires at/), 1);
    assert.equal(about(/^the certificate of tls:\/\/127\.0\.0\.1:\d+ \(CN=localhost\) expires at/), 1);
  });

  it('stops on SIGTERM within its grace whatever the peers do; a cut session resumes', async () => {
    const idle = await silent(listener!.port, '127.0.0.1');
    const stalled = await session('127.0.0.2');
    const meta = makeMeta('web', [disk]);
    await stalled.sender.open(meta);
    await stalled.sender.sendData('vda', 0, content(3, 4 * C));
    stalled.sender.mark('vda', 4 * C);
    await stalled.sender.expectedDigests('vda', 0, 1);
    // Neither peer sends another byte or closes.
    const t0 = Date.now();
    const code = await stopWithin(listener!, 20_000);
    const ms = Date.now() - t0;
    assert.equal(code, 0, `the listener must exit (${listener!.stderr().slice(-2000)})`);
    assert.ok(ms < 2000 + 6000, `stopped after ${ms} ms with a 2 s grace`);
    assert.match(listener!.stderr(), /1 session\(s\) were cut/);
    assert.notEqual(await closedWithin(idle.closed, 1000), 'open');
    stalled.socket.destroy();

    listener = await startListener(dir, join(dir, 'store'), ['--token-file', join(dir, 'token')], {
      HAVEN_LOG_DIR: join(dir, 'logs'),
    });
    const again = await session('127.0.0.1');
    const opened = await again.sender.open(meta);
    assert.equal(opened.resume?.watermarks.vda, 4 * C);
    await again.sender.close();
    again.socket.destroy();
  });
});
