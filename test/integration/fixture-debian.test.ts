/**
 * The Debian 12 test guest (test/fixtures/debian): the cached image boots from its own disk
 * through GRUB under TCG, systemd runs, the host reaches sshd at a fixture address, LVM (thin
 * pools too) works on an extra disk (this host's kernel has no device-mapper; the guest's has),
 * Haven installed from this repository answers there, a Haven ssh:// target reaches it with the
 * fixture's ssh options, and two guests run at once at distinct addresses.
 *
 * The first run on a machine builds the image (a few minutes, cached in
 * $HAVEN_FIXTURE_CACHE); later runs only boot guests. Timings go to the test output.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openTarget } from '../../src/transport/index.ts';
import {
  createDebianGuest,
  createDebianNetwork,
  type DebianGuest,
  debianImage,
  imageKey,
  installHaven,
  REAR_PACKAGES,
} from '../fixtures/debian/index.ts';
import { C, content, makeMeta, sendDelta, wholeDisks } from './protocol-helpers.ts';

const PREFIX = 'haven-t-deb';

function note(t: { diagnostic(msg: string): void }, msg: string): void {
  t.diagnostic(msg);
  process.stderr.write(`fixture-debian: ${msg}\n`);
}

async function sh(guest: DebianGuest, command: string): Promise<string> {
  return (await guest.ssh(command)).stdout.trim();
}

describe('Debian test guest fixture', () => {
  it('keys the image cache by every input', async () => {
    const base = await imageKey();
    assert.match(base, /^[0-9a-f]{16}$/);
    assert.equal(await imageKey(), base, 'the same inputs give the same key');
    const rear = await imageKey({ packages: REAR_PACKAGES });
    assert.notEqual(rear, base, 'a variant with extra packages is its own image');
    assert.equal(
      await imageKey({ packages: [...REAR_PACKAGES].reverse() }),
      rear,
      'package order is not an input',
    );
    assert.equal(
      await imageKey({ packages: ['lvm2'] }),
      base,
      'a package already in the base set changes nothing',
    );
    assert.notEqual(await imageKey({ kernel: 'generic' }), base);
    assert.notEqual(await imageKey({ diskMiB: 8192 }), base);
  });

  it('boots from its disk with GRUB, runs systemd and sshd, has LVM on an extra disk and runs Haven', async (t) => {
    const built = Date.now();
    const image = await debianImage();
    note(t, `image ${image.key} ready after ${Date.now() - built} ms (kernel ${image.kernelVersion})`);

    const guest = await createDebianGuest(t, { prefix: PREFIX, extraDisks: [{ sizeMiB: 1024 }] });
    note(t, `${guest.name} at ${guest.address}: sshd answered ${guest.bootMs} ms after start`);

    // A disk boot, not a direct kernel boot: GRUB put BOOT_IMAGE on the command line, and the
    // root filesystem is the first partition of vda.
    assert.match(await sh(guest, 'cat /proc/cmdline'), /^BOOT_IMAGE=\/boot\/vmlinuz-\S+ root=UUID=/);
    assert.equal(await sh(guest, 'findmnt -n -o SOURCE /'), '/dev/vda1');
    assert.match(await guest.serial(), /Booting `Debian GNU\/Linux'/);
    assert.equal(await sh(guest, 'cat /etc/os-release | sed -n "s/^VERSION_ID=//p"'), '"12"');

    // systemd is PID 1 and the boot finished with no failed unit.
    assert.equal(await sh(guest, 'readlink /proc/1/exe'), '/usr/lib/systemd/systemd');
    const state = await guest.ssh('systemctl is-system-running --wait', { okCodes: [0, 1] });
    assert.equal(
      state.stdout.trim(),
      'running',
      `failed units: ${await sh(guest, 'systemctl --failed --no-legend')}`,
    );
    assert.match(
      await sh(guest, 'ip -4 -o addr show'),
      new RegExp(`inet ${guest.address.replace(/\./g, '\\.')}/24`),
    );

    // LVM on the extra disk: thick and thin volumes, data written through device-mapper.
    assert.match(await sh(guest, 'lvm version'), /LVM version:\s+2\./);
    await guest.ssh('pvcreate -q /dev/vdb && vgcreate -q vg_test /dev/vdb');
    await guest.ssh('lvcreate -q -n thick -L 64M vg_test');
    await guest.ssh('lvcreate -q --type thin-pool -L 256M -n pool vg_test');
    await guest.ssh('lvcreate -q -V 512M -T vg_test/pool -n thin && lvcreate -q -s -n snap vg_test/thin');
    const lvs = await sh(guest, 'lvs --noheadings -o lv_name,lv_attr,lv_size --units m vg_test');
    for (const lv of ['thick', 'pool', 'thin', 'snap']) assert.match(lvs, new RegExp(`^\\s*${lv}\\s`, 'm'));
    const data = content(7, 4 << 20);
    await guest.ssh('dd of=/dev/vg_test/thick bs=1M oflag=direct status=none', { input: data });
    const sum = createHash('sha256').update(data).digest('hex');
    assert.equal(
      await sh(guest, 'head -c 4194304 /dev/vg_test/thick | sha256sum | cut -d" " -f1'),
      sum,
      'what was written to the LV reads back',
    );

    // Files in and out with scp.
    const local = join(guest.dir, 'probe.bin');
    await writeFile(local, content(3, 300_000));
    await guest.copyIn(local, '/root/probe.bin');
    assert.equal(
      await sh(guest, 'sha256sum /root/probe.bin | cut -d" " -f1'),
      createHash('sha256')
        .update(await readFile(local))
        .digest('hex'),
    );
    await guest.copyOut('/root/probe.bin', `${local}.back`);
    assert.ok((await readFile(`${local}.back`)).equals(await readFile(local)));

    // Haven from this repository, then a real replication into a store in the guest through
    // Haven's ssh transport, with the fixture's ssh options.
    const haven = await installHaven(guest);
    note(t, `installHaven: copy ${haven.copyMs} ms, first haven --version ${haven.versionMs} ms`);
    const disks = [{ name: 'vda', size: 3 * C }];
    const source = { vda: content(11, 3 * C) };
    const conn = await openTarget(guest.url('/srv/store'), { sshOptions: guest.sshOptions });
    const sender = await StreamSender.connect(conn.stream, { handshakeTimeoutMs: 120_000 });
    await sender.open(makeMeta('web', disks));
    const generation = await sendDelta(sender, makeMeta('web', disks), source, wholeDisks(source));
    await sender.close();
    await conn.close();
    assert.ok(generation);
    const report = JSON.parse(await sh(guest, 'haven verify --store /srv/store --json web')) as {
      ok: boolean;
    };
    assert.equal(report.ok, true, JSON.stringify(report));

    const stopped = Date.now();
    await guest.poweroff();
    assert.equal(await guest.state(), 'shut off');
    note(t, `poweroff took ${Date.now() - stopped} ms`);
  });

  it('runs two guests at once on one network, at distinct addresses, reaching each other', async (t) => {
    const network = await createDebianNetwork(t);
    const started = Date.now();
    // Direct kernel boot: the same disk and command line without GRUB's slow BIOS reads.
    const [a, b] = await Promise.all([
      createDebianGuest(t, { prefix: PREFIX, network, boot: 'kernel' }),
      createDebianGuest(t, { prefix: PREFIX, network, boot: 'kernel' }),
    ]);
    note(t, `two guests answered after ${Date.now() - started} ms (${a.bootMs} and ${b.bootMs} ms)`);
    assert.notEqual(a.address, b.address);
    assert.notEqual(a.mac, b.mac);
    for (const g of [a, b]) {
      assert.match(
        await sh(g, 'ip -4 -o addr show'),
        new RegExp(`inet ${g.address.replace(/\./g, '\\.')}/24`),
      );
    }
    // Each boot made its own machine id (the image holds none).
    assert.notEqual(await sh(a, 'cat /etc/machine-id'), await sh(b, 'cat /etc/machine-id'));
    // Guest to guest: a reaches b's sshd (bash's /dev/tcp; the image has no ping).
    const banner = await sh(a, `timeout 20 bash -c 'exec 3<>/dev/tcp/${b.address}/22; head -c 8 <&3'`);
    assert.equal(banner, 'SSH-2.0-');
    assert.equal(await sh(a, 'findmnt -n -o SOURCE /'), '/dev/vda1');

    // The ACPI power button shuts a guest down cleanly (systemd-logind), as Haven's shutdown
    // consistency and drills expect of a server.
    const result = await b.shutdown();
    assert.equal(result.stopped, true, `still ${result.state}`);
    assert.equal(await a.state(), 'running');
  });

  it('cleans up the domain, its files and its bridge, and removes bridges a killed process left', async (t) => {
    // A bridge as a killed test process leaves it: its owner is gone and nothing is attached.
    const dead = spawnSync('true').pid!;
    const stale = 'hvdeb-stale';
    await exec('ip', ['link', 'add', 'name', stale, 'type', 'bridge']);
    t.after(() => exec('ip', ['link', 'del', 'dev', stale]).catch(() => {}));
    await exec('ip', ['link', 'set', 'dev', stale, 'alias', `haven-debian-fixture pid=${dead}`]);

    const hooks: (() => unknown)[] = [];
    const guest = await createDebianGuest(
      { after: (fn) => hooks.push(fn) },
      { prefix: PREFIX, start: false },
    );
    assert.equal(existsSync(`/sys/class/net/${stale}`), false, 'the stale bridge was removed');
    assert.equal(await guest.state(), 'shut off');
    assert.ok(existsSync(`/sys/class/net/${guest.network.bridge}`));
    assert.ok(existsSync(guest.disks[0]!.path));
    for (const hook of hooks) await hook();
    await assert.rejects(guest.state(), (e: Error & { code?: string }) => e.code === 'VIRT_DOMAIN_NOT_FOUND');
    assert.equal(existsSync(`/sys/class/net/${guest.network.bridge}`), false);
    assert.equal(existsSync(guest.dir), false);
  });
});
