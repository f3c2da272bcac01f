/**
 * Issue 13.1 at the DR site, against real libvirt, QEMU and virtlogd: a store on disk can be
 * edited, so activation, drills and restore apply the definition rules to what they read from
 * `definitions/<server>.xml`. The test edits a protected server's definition the way an attacker
 * with write access to the store (or an older Haven that stored what a sender sent) would: a
 * `qemu:commandline` chardev writing a chosen file, a serial port and a console log at chosen
 * paths, the host's / through 9p, an emulator and an interface script that would run as programs,
 * a host file as a disk, and a relaxed security label. Activation and a drill boot the copy with
 * all of that removed and reported, and none of the chosen files is written; restore defines the
 * server without them; a definition that is not a QEMU/KVM domain is refused; and what the DR
 * host's configuration allows for the server is kept, reported, and takes effect.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ActivationReport, DrillReport, RestoreResult } from '../../src/recovery/index.ts';
import { Virsh } from '../../src/virt/index.ts';
import { havenEnv, havenJson } from '../helpers/haven.ts';
import {
  domainsLike,
  guestDefinitions,
  protect,
  runHaven,
  site,
  snapshot,
  waitForText,
} from './recovery-helpers.ts';

const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';

test('an edited definition boots with what it must not hold removed; the chosen host files stay unwritten', async (t) => {
  const s = await site(t, 'hostile');
  const server = s.guest.name;
  await s.guest.writePattern('vda', 61, 20);
  await s.guest.setWorkload({ name: 'pattern-verify', seed: 61, count: 20 });
  await protect(s, 2);
  await s.guest.destroy();

  // What the attacker wants written or run: each leaves a file if it happens.
  const pwn = (what: string) => join(s.dir, `pwned-${what}`);
  const program = async (what: string, exec: string) => {
    const path = join(s.dir, `${what}.sh`);
    await writeFile(path, `#!/bin/sh\ntouch ${pwn(what)}\n${exec}\n`);
    await chmod(path, 0o755);
    return path;
  };
  const emulator = await program('emulator', 'exec /usr/bin/qemu-system-x86_64 "$@"');
  const script = await program('script', 'exit 0');
  const file = join(s.store, 'definitions', `${server}.xml`);
  const original = await readFile(file, 'utf8');
  const hostile = original.replace('<domain ', `<domain xmlns:qemu="${QEMU_NS}" `).replace(
    '</devices>',
    `<emulator>${emulator}</emulator>
      <serial type="file"><source path="${pwn('serial')}"/><target port="2"/><log file="${pwn('log')}"/></serial>
      <filesystem type="mount" accessmode="passthrough"><source dir="/"/><target dir="hostroot"/></filesystem>
      <disk type="file" device="disk"><driver name="qemu" type="raw"/><source file="/etc/hostname"/><target dev="vdz" bus="virtio"/><readonly/></disk>
      <interface type="ethernet"><script path="${script}"/></interface>
    </devices>
    <seclabel type="none" model="dac"/>
    <qemu:commandline><qemu:arg value="-chardev"/><qemu:arg value="file,id=pw,path=${pwn('qemu')}"/><qemu:arg value="-device"/><qemu:arg value="isa-serial,chardev=pw,index=3"/></qemu:commandline>`,
  );
  await writeFile(file, hostile);
  const written = () => ['emulator', 'script', 'serial', 'log', 'qemu'].filter((w) => existsSync(pwn(w)));

  // Activation: boots, the guest verifies its data, nothing chosen was written or run.
  const dr = `${server}-dr`;
  const at = ['--store', s.store];
  const report = await havenJson<ActivationReport>(s.h, ['activate', server, ...at, '--name', dr]);
  const r = report.servers[0]!;
  assert.equal(r.status, 'running', JSON.stringify(r.error));
  const rules = new Set(r.definition?.removed.map((c) => c.rule));
  for (const rule of ['emulator', 'filesystem', 'disks', 'interfaces', 'seclabel', 'namespaces'])
    assert.ok(
      rules.has(rule as never),
      `activation removed something under ${rule}: ${JSON.stringify(r.definition)}`,
    );
  assert.deepEqual(r.definition?.allowed, []);
  // The chosen console files got Haven's names in the activation's area instead.
  assert.deepEqual(
    r.moved.filter((m) => m.from.startsWith(s.dir)),
    [
      { from: pwn('log'), to: join(r.overlayDir!, 'serial2-log.log') },
      { from: pwn('serial'), to: join(r.overlayDir!, 'serial2.log') },
    ],
  );
  await waitForText(
    join(r.overlayDir!, 'serial0.log'),
    'HAVEN pattern-verify OK disk=vda seed=61 count=20',
    90_000,
  );
  const running = await new Virsh().run(['dumpxml', '--domain', dr]);
  assert.doesNotMatch(running, /qemu:commandline|<filesystem|vdz|type='ethernet'|pwned|seclabel type='none'/);
  // The third port became Haven's file in the activation's area.
  assert.match(running, new RegExp(`${join(r.overlayDir!, 'serial2.log')}`));
  assert.deepEqual(written(), [], 'a file the definition chose was written, or a program it named ran');
  const d = await runHaven(s.h, ['deactivate', server, '--store', s.store, '--destroy']);
  assert.equal(d.code, 0, d.stderr);

  // A drill of the same definition: passes, reports the same, writes nothing chosen either.
  const drill = await runHaven(s.h, [
    'drill',
    server,
    '--store',
    s.store,
    '--marker',
    'HAVEN pattern-verify OK',
    '--timeout',
    '3m',
    '--json',
  ]);
  assert.equal(drill.code, 0, drill.stderr);
  const dres = (JSON.parse(drill.stdout) as DrillReport).results[0]!;
  assert.equal(dres.result, 'pass');
  assert.ok(dres.definition?.removed.some((c) => c.rule === 'namespaces'));
  assert.deepEqual(written(), []);

  // Restore defines the server without them (no boot needed to see it).
  const name = `${server}-restored`;
  const virsh = new Virsh();
  t.after(() => virsh.run(['undefine', '--domain', name]).catch(() => ''));
  const to = join(s.dir, 'restored');
  const restored = await havenJson<RestoreResult>(s.h, [
    'restore',
    server,
    ...at,
    '--generation',
    '1',
    '--to',
    to,
    '--name',
    name,
  ]);
  assert.ok(restored.definition?.removed.some((c) => c.rule === 'filesystem'));
  const defined = await virsh.run(['dumpxml', '--domain', name, '--inactive']);
  assert.doesNotMatch(
    defined,
    /qemu:commandline|<filesystem|vdz|type='ethernet'|pwned|<emulator>[^<]*emulator\.sh/,
  );
  await virsh.run(['undefine', '--domain', name]);

  // The DR host allows this server its console files where its definition says: kept, reported,
  // and virtlogd writes the chosen file (that the allowance takes effect is the proof).
  const config = join(s.dir, 'allow.yaml');
  await writeFile(config, guestDefinitions(s.guest, `  allow:\n    ${server}: [chardevs]\n`));
  const allowing = await havenEnv(s.dir, { HAVEN_CONFIG: config });
  const a = (
    await havenJson<ActivationReport>(allowing, ['activate', server, '--store', s.store, '--name', dr])
  ).servers[0]!;
  assert.equal(a.status, 'running', JSON.stringify(a.error));
  assert.ok(
    a.definition?.allowed.some((c) => c.rule === 'chardevs' && c.detail === pwn('serial')),
    JSON.stringify(a.definition),
  );
  // QEMU (through virtlogd) opens its character devices as it starts, before the guest runs.
  assert.equal(existsSync(pwn('serial')), true, 'the allowed path is used');
  assert.deepEqual(
    written().filter((w) => w !== 'serial' && w !== 'log'),
    [],
    'what was not allowed still did not happen',
  );
  const d2 = await runHaven(allowing, ['deactivate', server, '--store', s.store, '--destroy']);
  assert.equal(d2.code, 0, d2.stderr);

  // What no removal makes safe is refused, and changes nothing.
  await writeFile(file, original.replace(/<domain type=['"]qemu['"]/, `<domain type='lxc'`));
  const before = await snapshot(s.store);
  const refused = await runHaven(s.h, ['activate', server, '--store', s.store, '--name', dr, '--json']);
  assert.equal(refused.code, 6, refused.stderr);
  assert.match(refused.stderr, /\[DEFINITION_UNSAFE\]/);
  assert.equal((JSON.parse(refused.stdout) as ActivationReport).servers[0]?.status, 'refused');
  assert.deepEqual(await snapshot(s.store), before);
  assert.deepEqual(await domainsLike(dr), []);
});
