/**
 * Issue 5, failback must-show, against real libvirt and QEMU. One host plays both sites: the
 * test guest's domain and images are the primary, a directory is the DR store, and the DR copy
 * runs beside the (stopped) primary under another name (`activate --name`), since one libvirt
 * cannot hold two domains of one name. The failback receiver runs as a local child process
 * (`--to local`) instead of over ssh: the stream is the same.
 *
 * The DR copy writes N MiB of random (incompressible) blocks; failback sends at most 2×N MiB
 * over the wire in both directions together, and the primary's disk then equals the DR copy's
 * byte for byte. On the way: replication to the store and a start of the stale primary are
 * refused while the copy runs, the primary is guarded, and after failback it runs again and the
 * next replication is incremental.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import type { FailbackResult } from '../../src/recovery/index.ts';
import { havenJson } from '../helpers/haven.ts';
import {
  activateBeside,
  domainsLike,
  drCopyOf,
  manifest,
  protect,
  runHaven,
  site,
  stat,
  waitForText,
} from './recovery-helpers.ts';

const BLOCK = 65536;
const MiB = 1024 * 1024;

test('failback sends at most 2×N for N MiB written at the DR site; the primary then equals the DR copy', async (t) => {
  const s = await site(t, 'fb');
  const server = s.guest.name;
  const dr = `${server}-dr`;
  const disk = s.guest.disks[0]!;
  await s.guest.writePattern('vda', 41, 30);
  await protect(s, 2);

  // The primary stops; the DR copy starts beside it.
  const { activation: a, copy } = await activateBeside(s);
  const from = (await stat(s.guest.serialLog)).size;
  assert.equal(a.primary?.reachable, true);
  assert.equal(a.primary?.running, false);
  assert.equal(a.primary?.guarded, true, 'the primary’s definition carries the guard');
  const guard = await havenJson<{ guarded: boolean }>(s.h, ['guard', 'status', server]);
  assert.equal(guard.guarded, true);

  // While the copy runs, replication of the server to this store is refused.
  const refused = await runHaven(s.h, ['protect', server, '--to', s.store]);
  assert.equal(refused.code, 6, refused.stderr);
  assert.match(refused.stderr, /STORE_ACTIVE_AT_DR/);

  // The DR copy writes N MiB at random.
  await waitForText(copy.serialLog, /^HAVEN ready$/m, 90_000);
  assert.equal((await stat(s.guest.serialLog)).size, from, 'the copy wrote nothing into the primary’s log');
  const count = 128;
  const N = (count * BLOCK) / MiB;
  const logFrom = (await stat(copy.serialLog)).size;
  assert.equal(await copy.command(`random start vda 0 ${count}`), 'ok');
  await waitForText(copy.serialLog, `HAVEN random done disk=vda writes=${count}`, 120_000, logFrom);
  assert.equal(await copy.command('sync'), 'ok');
  const written = new Set(
    [...(await copy.serial()).matchAll(/^HAVEN random disk=vda block=(\d+) md5=/gm)].map((m) => Number(m[1])),
  );
  assert.ok(written.size > count / 2);

  // The DR copy as it stands, for the comparison afterwards (it writes nothing more).
  const drCopy = await drCopyOf(s, a, disk.storeName);

  const r = await havenJson<FailbackResult>(s.h, ['failback', server, '--store', s.store, '--to', 'local']);
  assert.deepEqual(
    r.passes.map((p) => [p.pass, p.mode]),
    [
      ['live', 'incremental'],
      ['final', 'incremental'],
    ],
  );
  assert.ok(r.passes[0]!.dataBytes >= written.size * BLOCK, 'the live pass sent every block the copy wrote');
  assert.ok(r.wireBytes <= 2 * N * MiB, `${r.wireBytes} bytes on the wire for ${N} MiB written`);
  assert.equal(r.started, true);
  t.diagnostic(
    `N = ${N} MiB written (${written.size} distinct blocks); on the wire ${r.wireBytes} bytes = ${(r.wireBytes / MiB).toFixed(2)} MiB; ` +
      r.passes
        .map(
          (p) =>
            `${p.pass}: ${p.mode} ${p.dataBytes} data bytes, ${p.wireBytes} wire bytes, ${p.durationMs} ms`,
        )
        .join('; '),
  );

  // The primary's disk equals the DR copy byte for byte.
  const cmp = await exec('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'raw', disk.path, drCopy], {
    okCodes: [0, 1],
  });
  assert.equal(cmp.code, 0, cmp.stdout);

  // The primary runs again, unguarded; the DR site holds nothing of the copy any more.
  assert.equal(await s.guest.state(), 'running');
  assert.equal((await havenJson<{ guarded: boolean }>(s.h, ['guard', 'status', server])).guarded, false);
  assert.deepEqual(await domainsLike(dr), []);
  assert.equal((await manifest(s)).activeAtDr, undefined);
  assert.equal(existsSync(a.overlayDir!), false);

  // Replication continues, incremental: the primary's bitmaps recorded what failback wrote.
  const next = await havenJson<ProtectResult>(s.h, ['protect', server, '--to', s.store]);
  assert.equal(next.mode, 'incremental');
  assert.equal(next.disks[0]!.dataBytes, r.passes[0]!.dataBytes + r.passes[1]!.dataBytes);
  const cmp2 = await exec(
    'qemu-img',
    ['compare', '-U', '-f', 'raw', '-F', 'raw', join(s.store, `${server}_${disk.storeName}_1.raw`), drCopy],
    {
      okCodes: [0, 1],
    },
  );
  assert.equal(cmp2.code, 0, cmp2.stdout);
});
