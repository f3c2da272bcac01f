/**
 * Failures against real servers: nothing listening, a peer that is not NBD, an unknown export, a
 * missing dirty bitmap, server error replies (nbdkit's error filter injects them), a server killed
 * or frozen with requests in flight. Each must end in its typed error, never a hang.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { HavenError } from '../../src/core/errors.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import type { NbdError } from '../../src/nbd/errors.ts';
import { type QemuNbdOptions, startQemuNbd } from '../../src/nbd/qemu-nbd.ts';
import { connectOptions, freePort, MiB, makeImage, nbdkit, scratch, serve } from './nbd-helpers.ts';

const isCode =
  (...codes: string[]) =>
  (e: NbdError) =>
    codes.includes(e.code);

describe('NBD connect failures', () => {
  it('no socket, nothing listening on a port: NBD_CONNECT_FAILED, kind unavailable', async (t) => {
    const dir = scratch(t);
    for (const o of [
      { socketPath: join(dir, 'missing.sock') },
      { host: '127.0.0.1', port: await freePort() },
    ]) {
      await assert.rejects(NbdClient.connect(o), (e: NbdError) => {
        assert.equal(e.code, 'NBD_CONNECT_FAILED');
        assert.equal(e.kind, 'unavailable');
        assert.equal(e.connectionUsable, false);
        assert.ok(['ENOENT', 'ECONNREFUSED'].includes(e.details?.errno as string));
        return true;
      });
    }
  });

  it('a peer that is not an NBD server, or hangs up during the handshake', async (t) => {
    const dir = scratch(t);
    // A scripted peer: no real program answers a unix socket with an SSH banner on demand.
    const sockets: net.Socket[] = [];
    const banner = net.createServer((s) => {
      sockets.push(s);
      s.end('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n');
    });
    const hangup = net.createServer((s) => {
      sockets.push(s);
      s.end(Buffer.from('NBDMAGIC'));
    });
    await new Promise<void>((r) => banner.listen(join(dir, 'ssh.sock'), r));
    await new Promise<void>((r) => hangup.listen(join(dir, 'hangup.sock'), r));
    t.after(() => {
      for (const s of sockets) s.destroy();
      banner.close();
      hangup.close();
    });
    await assert.rejects(
      NbdClient.connect({ socketPath: join(dir, 'ssh.sock') }),
      isCode('NBD_NOT_NBD_SERVER'),
    );
    await assert.rejects(
      NbdClient.connect({ socketPath: join(dir, 'hangup.sock') }),
      isCode('NBD_CONNECTION_LOST'),
    );
  });

  it('an unknown export name: NBD_NO_SUCH_EXPORT, and the server still serves the right one', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    const server = await serve(t, dir, { image, format: 'raw', readOnly: true, exportName: 'vda' });
    await assert.rejects(
      NbdClient.connect({ socketPath: server.socketPath!, exportName: 'vdb' }),
      (e: NbdError) => {
        assert.equal(e.code, 'NBD_NO_SUCH_EXPORT');
        assert.equal(e.kind, 'not-found');
        assert.match(e.message, /"vdb"/);
        return true;
      },
    );
    const c = await NbdClient.connect({ socketPath: server.socketPath!, exportName: 'vda' });
    assert.equal((await c.read(MiB, 2)).toString('hex'), 'abab');
    await c.close();
  });

  it('a dirty bitmap the export does not have: NBD_META_CONTEXT_UNSUPPORTED', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.qcow2', 'qcow2', 'b0');
    const server = await serve(t, dir, { image, format: 'qcow2', readOnly: true, bitmaps: ['b0'] });
    await assert.rejects(
      NbdClient.connect({
        ...connectOptions(server),
        metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b9'],
      }),
      (e: NbdError) => {
        assert.equal(e.code, 'NBD_META_CONTEXT_UNSUPPORTED');
        assert.deepEqual(e.details?.missing, ['qemu:dirty-bitmap:b9']);
        assert.equal(e.connectionUsable, false);
        return true;
      },
    );
    const c = await NbdClient.connect({ ...connectOptions(server), metaContexts: ['qemu:dirty-bitmap:b0'] });
    assert.deepEqual([...c.contexts.keys()], ['qemu:dirty-bitmap:b0']);
    await c.close();
  });
});

describe('exporting with qemu-nbd', () => {
  it("a missing image or bitmap: NBD_SERVER_START_FAILED with qemu-nbd's own message", async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.qcow2', 'qcow2');
    const cases: [Partial<QemuNbdOptions>, RegExp][] = [
      [{ image: join(dir, 'nope.qcow2'), format: 'qcow2' }, /nope\.qcow2/],
      [{ image, format: 'qcow2', bitmaps: ['b7'] }, /b7/],
    ];
    for (const [o, why] of cases) {
      await assert.rejects(
        startQemuNbd({
          image,
          format: 'qcow2',
          ...o,
          socketPath: join(dir, 'x.sock'),
          pidFile: join(dir, 'x.pid'),
        }),
        (e: HavenError) =>
          e.code === 'NBD_SERVER_START_FAILED' && e.kind === 'unavailable' && why.test(e.message),
      );
    }
  });
});

describe('NBD server error replies (nbdkit error filter)', () => {
  it('EIO on reads and ENOSPC on writes fail only that request; the connection stays usable', async (t) => {
    const dir = scratch(t);
    const trigger = join(dir, 'inject');
    const server = await nbdkit(t, dir, [
      '--filter=error',
      'memory',
      '8M',
      'error-pread=EIO',
      'error-pread-rate=100%',
      `error-pread-file=${trigger}`,
      'error-pwrite=ENOSPC',
      'error-pwrite-rate=100%',
      `error-pwrite-file=${trigger}`,
    ]);
    const c = await NbdClient.connect({ ...connectOptions(server), maxInFlight: 8 });
    t.after(() => c.close());
    await c.write(0, Buffer.alloc(4096, 0x42));
    writeFileSync(trigger, '');
    const reads = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => c.read(i * 4096, 4096)));
    for (const r of reads) {
      assert.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as NbdError;
      assert.equal(e.code, 'NBD_EIO');
      assert.equal(e.kind, 'io');
      assert.equal(e.connectionUsable, true);
    }
    await assert.rejects(
      c.write(0, Buffer.alloc(512)),
      (e: NbdError) => e.code === 'NBD_ENOSPC' && e.kind === 'resource' && e.connectionUsable,
    );
    assert.equal(c.usable, true);
    rmSync(trigger);
    assert.ok(
      (await c.read(0, 4096)).every((b) => b === 0x42),
      'the same connection reads again, and the failed write changed nothing',
    );
  });

  it('ESHUTDOWN: the request fails, the client stops sending and disconnects cleanly', async (t) => {
    const dir = scratch(t);
    const server = await nbdkit(t, dir, [
      '--filter=error',
      'memory',
      '8M',
      'error-pread=ESHUTDOWN',
      'error-pread-rate=100%',
    ]);
    const c = await NbdClient.connect(connectOptions(server));
    await assert.rejects(c.read(0, 4096), (e: NbdError) => e.code === 'NBD_ESHUTDOWN' && !e.connectionUsable);
    assert.equal(c.usable, false);
    await assert.rejects(c.flush(), (e: NbdError) => e.code === 'NBD_CLOSED');
    await c.close();
  });
});

describe('a dead or frozen NBD server never leaves a request hanging', () => {
  it('killing qemu-nbd with 64 reads in flight fails them all; the client is unusable', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    const server = await serve(t, dir, { image, format: 'raw', readOnly: true });
    const c = await NbdClient.connect({ ...connectOptions(server), maxInFlight: 16 });
    t.after(() => c.close());
    // 16 on the wire and 48 queued locally when the server dies.
    const reads = Array.from({ length: 64 }, (_, i) => c.read((i % 32) * MiB, MiB));
    process.kill(server.pid, 'SIGKILL');
    const results = await Promise.allSettled(reads);
    const failed = results
      .filter((r) => r.status === 'rejected')
      .map((r) => (r as PromiseRejectedResult).reason as NbdError);
    assert.ok(failed.length > 0, 'the server died before answering everything');
    for (const e of failed) {
      assert.ok(['NBD_CONNECTION_LOST', 'NBD_TRUNCATED'].includes(e.code), e.code);
      assert.equal(e.connectionUsable, false);
    }
    assert.equal(c.usable, false);
    await assert.rejects(
      c.read(0, 512),
      (e: NbdError) =>
        e.code === 'NBD_CONNECTION_UNUSABLE' &&
        ['NBD_CONNECTION_LOST', 'NBD_TRUNCATED'].includes((e.cause as NbdError).code),
    );
  });

  it('a frozen qemu-nbd (SIGSTOP) breaks the connection after requestTimeoutMs', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    const server = await serve(t, dir, { image, format: 'raw', readOnly: true });
    const c = await NbdClient.connect({ ...connectOptions(server), requestTimeoutMs: 300 });
    t.after(() => c.close());
    assert.equal((await c.read(MiB, 1))[0], 0xab);
    process.kill(server.pid, 'SIGSTOP');
    try {
      const reads = [c.read(0, MiB), c.read(MiB, MiB)];
      for (const r of reads) {
        await assert.rejects(
          r,
          (e: NbdError) => e.code === 'NBD_TIMEOUT' && e.kind === 'unavailable' && !e.connectionUsable,
        );
      }
    } finally {
      process.kill(server.pid, 'SIGCONT');
    }
    assert.equal(c.usable, false);
  });
});
