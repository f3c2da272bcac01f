/**
 * Host recovery end to end (issue 16, docs/hosts.md): a Debian 12 guest with rear 2.7 plays the
 * hypervisor host. Haven, reaching it over SSH, sets up its ReaR configuration, stores its rescue
 * media and backup archive as generations in a filesystem store, makes no new media when nothing
 * changed, and a drill boots the stored media in a new VM with a blank disk, recovers unattended,
 * and boots the recovered disk until it prints a marker file written on the host before the
 * backup. Then a damaged archive: `haven verify` names it, its drill fails with an alert, the older
 * generation is intact. A partition added to the host makes `check` and a dry-run `backup` ask
 * for new media.
 *
 * Slow under TCG (ReaR builds its rescue system in the guest, ~10 min; the drill ~8 min): the
 * time of each step goes to the test output.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { SITE_CONFIG_LINE } from '../../src/hosts/rear-config.ts';
import { createDebianGuest, REAR_PACKAGES } from '../fixtures/debian/index.ts';
import { type HavenEnv, havenEnv, runHaven } from '../helpers/haven.ts';

const PREFIX = 'haven-t-hostrec';
const MIN = 60_000;
/**
 * Left out of the host's archive (`exclude`): the fixture's node binary (for other tests'
 * receivers), nothing the host needs to boot. The recovered system must lack it, and every
 * archive, and so every backup and restore, is about 35 MB (a sixth) smaller.
 */
const EXCLUDED = '/usr/local/bin/node';

function note(t: { diagnostic(msg: string): void }, msg: string): void {
  t.diagnostic(msg);
  process.stderr.write(`host-recovery: ${msg}\n`);
}

async function haven(h: HavenEnv, args: string[], timeoutMs = 10 * MIN) {
  const r = await runHaven(h, args, { timeoutMs });
  // biome-ignore lint/suspicious/noExplicitAny: the JSON reports of several commands, read field by field
  return { ...r, json: () => JSON.parse(r.stdout) as Record<string, any> };
}

function yaml(o: {
  address: string;
  sshOptions: string[];
  store: string;
  marker: string;
  unreachable: string;
}): string {
  const opts = JSON.stringify(o.sshOptions);
  return `targets:
  dr:
    url: ${o.store}
    copies: 2
hosts:
  hv1:
    url: ssh://root@${o.address}
    ssh:
      options: ${opts}
    target: dr
    exclude: [${EXCLUDED}]
    rear:
      user_input_timeout: 10s
  gone:
    url: ssh://root@${o.unreachable}
    ssh:
      options: ${opts}
    target: dr
drills:
  hosts:
    store: ${o.store}
    hosts: [hv1]
    boot_marker:
      serial: "${o.marker}"
    timeout: 15m
    recovery_timeout: 45m
    host_vm:
      memory: 1536MiB
      vcpus: 1
      virt_type: qemu
`;
}

it('stores a host’s rescue media and backup through ReaR, and a drill recovers it', async (t) => {
  const root = process.env.HAVEN_TEST_ROOT ?? tmpdir();
  await mkdir(root, { recursive: true });
  const dir = await mkdtemp(join(root, `${PREFIX}-`));
  // QEMU, running as its own user, reaches the drill's disks and consoles under here.
  await chmod(dir, 0o755);
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = join(dir, 'store');
  const t0 = Date.now();
  const host = await createDebianGuest(t, {
    prefix: PREFIX,
    image: { packages: REAR_PACKAGES },
    memoryMiB: 1024,
  });
  note(
    t,
    `host guest booted in ${(host.bootMs / 1000).toFixed(0)} s (with image: ${((Date.now() - t0) / 1000).toFixed(0)} s)`,
  );

  // What the recovered system must show: a file written on the host before the backup, printed
  // on the console at every boot, with whether the excluded file came back (it must not).
  const token = randomBytes(8).toString('hex');
  const marker = `haven-recovered-${token}`;
  await host.ssh(`echo ${marker} > /root/haven-marker
cat > /etc/systemd/system/haven-marker.service <<'EOF'
[Unit]
Description=print the drill marker
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "marker: $(cat /root/haven-marker) $(test -e ${EXCLUDED} && echo restored || echo excluded)" > /dev/ttyS0'
[Install]
WantedBy=multi-user.target
EOF
systemctl enable haven-marker.service 2>/dev/null`);

  const config = join(dir, 'haven.yaml');
  await writeFile(
    config,
    yaml({
      address: host.address,
      sshOptions: host.sshOptions,
      store,
      marker: `marker: ${marker} excluded`,
      unreachable: host.address.replace(/\.\d+$/, '.250'),
    }),
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });

  // Not set up yet: refused with what to run.
  const early = await haven(h, ['host', 'backup', 'hv1']);
  assert.equal(early.code, 6, early.stderr);
  assert.match(early.stderr, /HOST_NOT_SET_UP/);
  assert.match(early.stderr, /haven host setup hv1/);

  // An unreachable host: HOST_UNREACHABLE, exit 5 (unavailable).
  const gone = await haven(h, ['host', 'setup', 'gone'], 2 * MIN);
  assert.equal(gone.code, 5, gone.stderr);
  assert.match(gone.stderr, /HOST_UNREACHABLE/);

  // ReaR missing: says which package.
  await host.ssh('mv /usr/sbin/rear /usr/sbin/rear.away');
  const missing = await haven(h, ['host', 'setup', 'hv1', '--json']);
  assert.equal(missing.code, 5, missing.stderr);
  assert.match(missing.stderr, /HOST_REAR_MISSING/);
  assert.match(missing.stderr, /apt-get install rear/);
  await host.ssh('mv /usr/sbin/rear.away /usr/sbin/rear');

  const dry = await haven(h, ['host', 'setup', 'hv1', '--dry-run', '--json']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal(dry.json().configWritten, true);
  assert.equal((await host.ssh('test -e /etc/rear/haven.conf', { okCodes: [0, 1] })).code, 1);

  const setup = await haven(h, ['host', 'setup', 'hv1', '--json']);
  assert.equal(setup.code, 0, setup.stderr);
  assert.match(setup.json().rearVersion, /2\.7/);
  assert.ok(setup.json().excludes.includes('/var/lib/libvirt/images/*'));
  assert.ok(setup.json().excludes.includes(EXCLUDED));
  assert.equal((await host.ssh(`test -x ${EXCLUDED}`, { okCodes: [0, 1] })).code, 0, 'there to leave out');
  const conf = (await host.ssh('cat /etc/rear/haven.conf')).stdout;
  assert.match(conf, /OUTPUT=ISO/);
  assert.match(conf, /BACKUP=NETFS/);
  assert.ok(
    (await host.ssh('cat /etc/rear/site.conf')).stdout.split('\n').includes(SITE_CONFIG_LINE),
    'rescue systems read Haven’s configuration',
  );
  assert.doesNotMatch(
    (await host.ssh('cat /etc/rear/local.conf')).stdout,
    /^OUTPUT=/m,
    'local.conf stays the operator’s',
  );

  const check0 = await haven(h, ['host', 'check', 'hv1', '--json']);
  assert.equal(check0.code, 0, check0.stderr);
  assert.equal(check0.json().layout, 'none');

  // The first backup: media and archive.
  const t1 = Date.now();
  const first = await haven(h, ['host', 'backup', 'hv1', '--json'], 60 * MIN);
  assert.equal(first.code, 0, first.stderr);
  const b1 = first.json();
  note(
    t,
    `first backup in ${((Date.now() - t1) / 1000).toFixed(0)} s: rear mkrescue ${b1.rescue.rearSeconds?.toFixed(0)} s, media ${b1.rescue.stored?.bytes} bytes stored in ${b1.rescue.stored?.seconds?.toFixed(0)} s, archive ${b1.backup.stored?.bytes} bytes in ${b1.backup.stored?.seconds?.toFixed(0)} s`,
  );
  assert.equal(b1.rescue.made, true);
  assert.equal(b1.rescue.stored.seq, 1);
  assert.equal(b1.backup.stored.seq, 1);
  const files = (await readdir(join(store, 'hosts'))).sort();
  assert.ok(files.includes('hv1_rescue_1.iso'), files.join(' '));
  assert.ok(files.includes('hv1_backup_1.tar.gz'), files.join(' '));
  assert.equal((await stat(join(store, 'hosts', 'hv1_rescue_1.iso'))).size, b1.rescue.stored.bytes);

  const check1 = await haven(h, ['host', 'check', 'hv1', '--json']);
  assert.equal(check1.json().layout, 'unchanged', check1.stderr);

  const verify = await haven(h, ['verify', '--store', store, '--json'], 20 * MIN);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);

  // The drill: the newest archive recovered in a VM with a blank disk.
  const t3 = Date.now();
  const drill = await haven(h, ['host', 'drill', 'hv1', '--store', store, '--json'], 70 * MIN);
  const d = drill.json();
  note(
    t,
    `drill ${d.result} in ${((Date.now() - t3) / 1000).toFixed(0)} s: ${JSON.stringify(d.phases)}, recorded ${d.seconds} s`,
  );
  assert.equal(d.result, 'pass', `${d.detail}\n${d.consoleTail ?? ''}\n${drill.stderr}`);
  assert.equal(drill.code, 0);
  assert.equal(d.recorded, true);
  assert.equal(d.backup.id, b1.backup.stored.id, 'the newest archive was drilled');
  const manifest = (await import('node:fs/promises')).readFile(
    join(store, '.haven', 'hosts', 'hv1', 'manifest.json'),
    'utf8',
  );
  assert.match(await manifest, /"result": ?"pass"/);

  // Nothing changed: no new media, a new archive.
  const t2 = Date.now();
  const second = await haven(h, ['host', 'backup', 'hv1', '--json'], 30 * MIN);
  assert.equal(second.code, 0, second.stderr);
  const b2 = second.json();
  note(t, `second backup (no media) in ${((Date.now() - t2) / 1000).toFixed(0)} s`);
  assert.equal(b2.rescue.made, false, b2.rescue.reason);
  assert.equal(b2.backup.stored.seq, 1);
  const after2 = (await readdir(join(store, 'hosts'))).sort();
  assert.deepEqual(after2, ['hv1.txt', 'hv1_backup_1.tar.gz', 'hv1_backup_2.tar.gz', 'hv1_rescue_1.iso']);

  const list = await haven(h, ['host', 'list', '--json']);
  const hv1 = (list.json() as unknown as { name: string; lastBackup: { status: string } }[]).find(
    (x) => x.name === 'hv1',
  );
  assert.equal(hv1?.lastBackup.status, 'ok');

  // A damaged archive: verify names it, its drill fails (an alert), the older one is intact.
  const fh = await open(join(store, 'hosts', 'hv1_backup_1.tar.gz'), 'r+');
  await fh.write(Buffer.from('damage'), 0, 6, 4096);
  await fh.close();
  const bad = await haven(h, ['verify', '--store', store, '--json'], 20 * MIN);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stdout + bad.stderr, /hv1_backup_1\.tar\.gz/);
  assert.doesNotMatch(bad.stdout + bad.stderr, /hv1_backup_2\.tar\.gz|hv1_rescue_1\.iso/);
  const badDrill = await haven(h, ['host', 'drill', 'hv1', '--store', store, '--json'], 20 * MIN);
  assert.equal(badDrill.code, 12, badDrill.stderr);
  assert.equal(badDrill.json().result, 'fail');
  const events = await haven(h, ['events', '--json']);
  assert.match(events.stdout, /host\.drill\.failed/);

  // A new partition: the layout changed, and the next backup would make new media.
  await host.ssh(
    'echo ",100M" | sfdisk --append --no-reread /dev/vda >/dev/null 2>&1; partx -a /dev/vda || true',
  );
  const check2 = await haven(h, ['host', 'check', 'hv1', '--json']);
  assert.equal(check2.json().layout, 'changed', check2.stderr);
  const plan = await haven(h, ['host', 'backup', 'hv1', '--dry-run', '--json'], 20 * MIN);
  assert.equal(plan.code, 0, plan.stderr);
  assert.equal(plan.json().rescue.made, true);
  assert.deepEqual((await readdir(join(store, 'hosts'))).sort(), after2, 'a dry run stores nothing');
  note(t, `total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
});
