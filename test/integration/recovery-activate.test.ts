/**
 * Issue 5, activation must-shows, against real libvirt and QEMU (one host plays both sites: the
 * test guest is the primary, a directory is the DR store):
 * - a guest whose disk holds a verifiable pattern is protected; the primary domain is destroyed,
 *   undefined and its directory (disks, console log) deleted; `haven activate` starts it from the
 *   store alone and the guest verifies its pattern on its serial console;
 * - refusals (primary still running, incomplete generation, unknown server, missing generation)
 *   exit non-zero with stable codes and change nothing;
 * - activating generation 2 leaves generation 2's files byte-identical while the copy writes.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import type { ActivationReport } from '../../src/recovery/index.ts';
import { havenJson } from '../helpers/haven.ts';
import {
  destroyDomainsLike,
  domainsLike,
  manifest,
  ownDataBytes,
  protect,
  runHaven,
  sha256File,
  site,
  snapshot,
  stat,
  waitForText,
} from './recovery-helpers.ts';

test('the primary is gone: activate from the store alone, the guest verifies its pattern', async (t) => {
  const s = await site(t, 'act');
  const server = s.guest.name;
  await s.guest.writePattern('vda', 11, 40);
  // What the copy runs at boot comes from the definition the store kept: verify the pattern.
  await s.guest.setWorkload({ name: 'pattern-verify', seed: 11, count: 40 });
  await protect(s, 2);

  // The disaster: the primary domain, its disks and its console log are gone.
  await s.guest.cleanup();
  assert.equal(existsSync(s.guest.dir), false);
  assert.deepEqual(await domainsLike(server), []);

  const report = await havenJson<ActivationReport>(s.h, ['activate', server, '--store', s.store]);
  t.after(() => destroyDomainsLike(server));
  const r = report.servers[0]!;
  assert.equal(r.status, 'running');
  assert.equal(r.domain, server);
  assert.equal(r.generation?.seq, 1);
  assert.ok(r.seconds !== undefined && r.seconds > 0);
  assert.match(r.checkpoint ?? '', /^haven-dr-/);
  // The console log's directory died with the primary; the definition names Haven's own file in
  // the activation's area instead (docs/recovery.md, "What a DR definition may hold").
  const consoleLog = join(s.store, '.haven', 'active', server, 'serial0.log');
  assert.equal(r.overlayDir, dirname(consoleLog));
  const definition = await readFile(join(s.store, 'definitions', `${server}.xml`), 'utf8');
  assert.ok(definition.includes(`path="${consoleLog}"`), definition);
  assert.ok(!definition.includes(s.guest.serialLog), 'the primary’s console path is not in the definition');
  const t0 = Date.now();
  await waitForText(consoleLog, 'HAVEN pattern-verify OK disk=vda seed=11 count=40', 90_000);
  t.diagnostic(
    `running ${r.seconds} s after the command; the guest verified its pattern ${((Date.now() - t0) / 1000).toFixed(1)} s later`,
  );

  const m = await manifest(s);
  assert.equal(m.activeAtDr?.domain, server);
  assert.equal(m.activeAtDr?.generationId, m.generations[0]!.id);
  assert.equal(m.activeAtDr?.checkpoint, r.checkpoint);
  assert.equal(m.activeAtDr?.force, false);
  const tested = m.generations[0]!.tests.at(-1);
  assert.equal(tested?.kind, 'activation');
  assert.equal(tested?.result, 'pass');

  // Activating it twice is refused.
  const again = await runHaven(s.h, ['activate', server, '--store', s.store]);
  assert.equal(again.code, 7, again.stderr);
  assert.match(again.stderr, /RECOVERY_ALREADY_ACTIVE/);

  // Giving the copy up stops it and leaves the store as replication expects it.
  const d = await runHaven(s.h, ['deactivate', server, '--store', s.store, '--destroy']);
  assert.equal(d.code, 0, d.stderr);
  assert.deepEqual(await domainsLike(server), []);
  assert.equal((await manifest(s)).activeAtDr, undefined);
  assert.equal(existsSync(join(s.store, '.haven', 'active', server)), false);
  const verify = await havenJson<{ ok: boolean }>(s.h, ['verify', server, '--store', s.store]);
  assert.equal(verify.ok, true);
});

test('refusals exit non-zero with stable codes and change nothing', async (t) => {
  const s = await site(t, 'refuse');
  const server = s.guest.name;
  await s.guest.writePattern('vda', 5, 20);
  await protect(s, 2);
  const before = await snapshot(s.store);
  const domainsBefore = await domainsLike(server);

  const cases: Array<{
    what: string;
    args: string[];
    exit: number;
    code: string;
    prepare?: () => Promise<() => Promise<void>>;
  }> = [
    {
      what: 'the primary still runs the server',
      args: ['activate', server, '--store', s.store, '--primary', 'qemu:///system'],
      exit: 6,
      code: 'RECOVERY_PRIMARY_RUNNING',
    },
    {
      what: 'an unknown server',
      args: ['activate', `${server}-nosuch`, '--store', s.store],
      exit: 4,
      code: 'RECOVERY_UNKNOWN_SERVER',
    },
    {
      what: 'a generation that does not exist',
      args: ['activate', server, '--store', s.store, '--generation', '3'],
      exit: 4,
      code: 'RECOVERY_NO_GENERATION',
    },
    {
      what: 'an incomplete generation',
      args: ['activate', server, '--store', s.store, '--json'],
      exit: 8,
      code: 'RECOVERY_GENERATION_INCOMPLETE',
      // The newest image is back to its "being written" name, as a copy cut short leaves it.
      prepare: async () => {
        const image = join(s.store, `${server}_${s.guest.disks[0]!.storeName}_1.raw`);
        const incomplete = image.replace(/_1\.raw$/, '_incomplete.raw');
        await rename(image, incomplete);
        return () => rename(incomplete, image);
      },
    },
  ];
  for (const c of cases) {
    const undo = await c.prepare?.();
    const r = await runHaven(s.h, c.args);
    await undo?.();
    assert.equal(r.code, c.exit, `${c.what}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`\\[${c.code}\\]`), c.what);
    if (c.args.includes('--json')) {
      const report = JSON.parse(r.stdout) as ActivationReport;
      assert.equal(report.servers[0]?.status, 'refused');
      assert.equal(report.servers[0]?.error?.code, c.code);
    }
    assert.deepEqual(await snapshot(s.store), before, `${c.what}: the store changed`);
    assert.deepEqual(await domainsLike(server), domainsBefore, `${c.what}: libvirt changed`);
  }

  // A dry run checks everything and changes nothing either.
  const dry = await havenJson<ActivationReport>(s.h, [
    'activate',
    server,
    '--store',
    s.store,
    '--dry-run',
    '--name',
    `${server}-dr`,
  ]);
  assert.equal(dry.servers[0]?.status, 'planned');
  assert.deepEqual(await snapshot(s.store), before);
  assert.deepEqual(await domainsLike(server), domainsBefore);
});

test('activating generation 2 leaves its files byte-identical', async (t) => {
  const s = await site(t, 'gen2');
  const server = s.guest.name;
  const disk = s.guest.disks[0]!.storeName;
  await s.guest.writePattern('vda', 21, 30);
  await protect(s, 3);
  await s.guest.writePattern('vda', 22, 30);
  await protect(s, 3);
  const gen2 = [join(s.store, `${server}_${disk}_2.raw`)];
  const m0 = await manifest(s);
  const id2 = m0.generations[1]!.id;
  const sums = join(s.store, '.haven', 'servers', server, 'digests', id2, `${disk}.sums`);
  const hashes = async () => Promise.all([...gen2, sums].map(sha256File));
  const before = await hashes();

  // The primary stops (its definition stays, so the copy runs under another name on this host).
  await s.guest.destroy();
  const logFrom = (await stat(s.guest.serialLog)).size;
  const report = await havenJson<ActivationReport>(s.h, [
    'activate',
    server,
    '--store',
    s.store,
    '--generation',
    '2',
    '--name',
    `${server}-dr`,
  ]);
  const r = report.servers[0]!;
  assert.equal(r.status, 'running');
  assert.equal(r.generation?.id, id2);
  assert.equal(r.domain, `${server}-dr`);
  // The copy's console log and control socket are Haven's, in the activation's area: the
  // primary's stay the primary's.
  const copy = s.guest.runningAs(`${server}-dr`, {
    serialLog: join(r.overlayDir!, 'serial0.log'),
    controlSocket: join(r.overlayDir!, 'sockets', 'serial1.sock'),
  });
  await waitForText(copy.serialLog, /^HAVEN ready$/m, 90_000);
  assert.equal(
    (await stat(s.guest.serialLog)).size,
    logFrom,
    'the copy wrote nothing into the primary’s log',
  );
  assert.equal(await copy.verifyPattern('vda', 21, 30), 'OK', 'generation 2 holds the first pattern');
  assert.match(await copy.verifyPattern('vda', 22, 30), /^BAD /, 'but not the second');
  // The copy writes: into its overlay, never into the generation.
  await copy.writePattern('vda', 23, 64);
  await copy.command('sync');
  const overlay = join(r.overlayDir!, `${disk}.qcow2`);
  assert.ok((await ownDataBytes(overlay)) >= 64 * 65536, 'the writes are in the overlay');
  assert.deepEqual(await hashes(), before, 'generation 2 changed while the copy ran');

  const d = await runHaven(s.h, ['deactivate', server, '--store', s.store, '--destroy']);
  assert.equal(d.code, 0, d.stderr);
  assert.deepEqual(await hashes(), before, 'generation 2 changed');
  const verify = await havenJson<{ ok: boolean }>(s.h, ['verify', server, '--store', s.store]);
  assert.equal(verify.ok, true);
  assert.deepEqual(await domainsLike(`${server}-dr`), []);
});
