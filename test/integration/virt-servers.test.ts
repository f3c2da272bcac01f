/**
 * Listing servers and their devices from real libvirt, and `haven servers` on top of it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  defineDomain,
  getServer,
  listServers,
  type Server,
  undefineDomain,
  Virsh,
  VirtError,
} from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';

const PREFIX = 'haven-t-virt';
const HAVEN = join(import.meta.dirname, '..', '..', 'bin', 'haven.mjs');
const MiB = 1024 * 1024;

function haven(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HAVEN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test('servers: running, shut-off and transient domains with disks, cdroms and store names', async (t) => {
  const [a, b, c] = await Promise.all([
    createTestGuest(t, {
      prefix: PREFIX,
      disks: [{ sizeMiB: 64 }, { sizeMiB: 32, format: 'raw' }],
      cdrom: 'iso',
    }),
    createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }], cdrom: 'empty', start: false }),
    createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 8 }], transient: true }),
  ]);
  const virsh = new Virsh();
  const all = await listServers(virsh);
  const byName = new Map(all.map((s) => [s.name, s]));
  const sa = byName.get(a.name);
  const sb = byName.get(b.name);
  const sc = byName.get(c.name);
  assert.ok(sa && sb && sc, 'all three are listed');

  assert.equal(sa.state, 'running');
  assert.equal(sa.persistent, true);
  assert.equal(sa.uuid, a.uuid);
  assert.ok(sa.id !== undefined && sa.id > 0);
  const isoSize = (await stat(a.cdromPath ?? '')).size;
  assert.deepEqual(
    sa.disks.map((d) => [
      d.target,
      d.device,
      d.bus,
      d.sourceType,
      d.format,
      d.virtualSize,
      d.readonly,
      d.empty,
      d.storeName,
    ]),
    [
      ['vda', 'disk', 'virtio', 'file', 'qcow2', 64 * MiB, false, false, `${a.name}_0`],
      ['vdb', 'disk', 'virtio', 'file', 'raw', 32 * MiB, false, false, `${a.name}_1`],
      ['hdc', 'cdrom', 'ide', 'file', 'raw', isoSize, true, false, undefined],
    ],
  );
  assert.equal(sa.disks[0]?.path, a.disks[0]?.path);
  assert.equal(sa.disks[2]?.path, a.cdromPath);

  assert.equal(sb.state, 'shut off');
  assert.equal(sb.id, undefined);
  assert.deepEqual(
    sb.disks.map((d) => [d.target, d.device, d.format, d.virtualSize, d.empty, d.storeName]),
    [
      ['vda', 'disk', 'qcow2', 16 * MiB, false, `${b.name}_0`],
      ['hdc', 'cdrom', 'raw', undefined, true, undefined],
    ],
  );

  assert.equal(sc.state, 'running');
  assert.equal(sc.persistent, false);

  const one = await getServer(virsh, b.name);
  assert.deepEqual(one, sb);
  await assert.rejects(
    getServer(virsh, `${PREFIX}-no-such-${randomBytes(3).toString('hex')}`),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND' && e.kind === 'not-found',
  );

  // `haven servers --json` on the guest with two disks and a cdrom: all three devices.
  const json = await haven(['servers', '--json', a.name]);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as Server[];
  assert.equal(parsed.length, 1);
  assert.deepEqual(
    parsed[0]?.disks.map((d) => [d.target, d.device, d.format, d.virtualSize]),
    [
      ['vda', 'disk', 'qcow2', 64 * MiB],
      ['vdb', 'disk', 'raw', 32 * MiB],
      ['hdc', 'cdrom', 'raw', isoSize],
    ],
  );

  const table = await haven(['servers', a.name, b.name]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`${a.name}\\s*│\\s*running`));
  assert.match(table.stdout, new RegExp(`${b.name}\\s*│\\s*shut off`));
  assert.match(table.stdout, /64\.0 MiB/);
  assert.match(table.stdout, /\(no media\)/);
  assert.match(table.stdout, new RegExp(`${a.name}_1`));
});

test('volume disks resolve to their path; a missing image does not break the listing', async (t) => {
  const dir = await testDir(t, `${PREFIX}-pool`);
  const virsh = new Virsh();
  const suffix = randomBytes(4).toString('hex');
  const pool = `${PREFIX}-pool-${suffix}`;
  const name = `${PREFIX}-vol-${suffix}`;
  await virsh.run(['pool-create-as', '--name', pool, '--type', 'dir', '--target', dir]);
  t.after(() => virsh.run(['pool-destroy', '--pool', pool]).catch(() => undefined));
  await virsh.run([
    'vol-create-as',
    '--pool',
    pool,
    '--name',
    `${name}_0.qcow2`,
    '--capacity',
    '24M',
    '--format',
    'qcow2',
  ]);
  await defineDomain(
    virsh,
    `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os>
      <devices>
        <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='${pool}' volume='${name}_0.qcow2'/><target dev='vda' bus='virtio'/></disk>
        <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${dir}/gone.img'/><target dev='vdb' bus='virtio'/></disk>
      </devices></domain>`,
  );
  t.after(() => undefineDomain(virsh, name).catch(() => undefined));

  const s = await getServer(virsh, name);
  const [vda, vdb] = s.disks;
  assert.equal(vda?.sourceType, 'volume');
  assert.equal(vda?.pool, pool);
  assert.equal(vda?.path, join(dir, `${name}_0.qcow2`));
  assert.equal(vda?.storeName, `${name}_0`);
  assert.equal(vda?.virtualSize, 24 * MiB);
  assert.equal(vdb?.path, join(dir, 'gone.img'));
  assert.equal(vdb?.virtualSize, undefined);
  assert.equal(vdb?.storeName, 'gone');
  assert.ok((await listServers(virsh)).some((x) => x.name === name));
});

test('haven servers: unknown server is exit 4, unreachable libvirtd is exit 5, both with stable codes', async () => {
  const missing = await haven(['servers', `${PREFIX}-nope-${randomBytes(3).toString('hex')}`]);
  assert.equal(missing.code, 4);
  assert.match(missing.stderr, /\[VIRT_DOMAIN_NOT_FOUND\]/);

  const down = await haven(['servers', '--json'], {
    HAVEN_LIBVIRT_URI: 'qemu:///system?socket=/nonexistent',
  });
  assert.equal(down.code, 5);
  assert.match(down.stderr, /\[VIRT_NO_LIBVIRTD\]/);
  assert.match(down.stderr, /libvirtd/);
  const err = JSON.parse(down.stdout) as { error: { code: string; kind: string } };
  assert.equal(err.error.code, 'VIRT_NO_LIBVIRTD');
  assert.equal(err.error.kind, 'unavailable');
  // And the library says the same without the CLI.
  await assert.rejects(
    listServers(new Virsh({ uri: 'qemu:///system?socket=/nonexistent' })),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_NO_LIBVIRTD',
  );
});

test('listing a server while its pull-mode backups start leaves the guest running', async (t) => {
  // QEMU 7.2 aborts when `query-named-block-nodes` (what libvirt sends for domblkinfo on a
  // running domain) meets a scratch qcow2 that backup-begin is still opening; with domblkinfo
  // in the listing this killed the guest within about fifteen backups. Listing must not query
  // the running QEMU's block nodes at all.
  const dir = await testDir(t, `${PREFIX}-race`);
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }, { sizeMiB: 32 }] });
  const lister = new Virsh({ session: true });
  t.after(() => lister.close());
  const virsh = new Virsh();
  let stop = false;
  let listings = 0;
  const listing = (async () => {
    while (!stop) {
      const s = await getServer(lister, g.name);
      assert.equal(s.disks[0]?.virtualSize, 32 * MiB);
      listings++;
    }
  })();
  try {
    for (let i = 0; i < 25; i++) {
      const xml = join(dir, `backup-${i}.xml`);
      const disks = ['vda', 'vdb']
        .map(
          (d) =>
            `<disk name='${d}' backup='yes' type='file'><scratch file='${dir}/scratch-${i}-${d}.qcow2'/></disk>`,
        )
        .join('');
      await writeFile(
        xml,
        `<domainbackup mode='pull'><server transport='unix' socket='${dir}/nbd-${i}.sock'/><disks>${disks}</disks></domainbackup>`,
      );
      await virsh.run(['backup-begin', '--domain', g.name, '--backupxml', xml]);
      await virsh.run(['domjobabort', '--domain', g.name]);
    }
  } finally {
    stop = true;
    await listing;
  }
  assert.ok(listings > 25, `the listing ran beside the backups (${listings} times)`);
  assert.equal((await getServer(virsh, g.name)).state, 'running');
});
