/**
 * The decisions of host backups and drills that need no host: when new rescue media are made
 * (the seed's `rear checklayout || rear mkrescue`, with the target's media as the judge), what
 * Haven's ReaR configuration keeps out of the archive, and which isolinux entry a drill boots.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { HostConfig } from '../core/config.ts';
import type { HostManifest } from '../store/host/types.ts';
import { rescueReason } from './backup.ts';
import { bootEntry } from './drill-vm.ts';
import {
  backupExcludes,
  rearConfig,
  SITE_CONFIG_LINE,
  SITE_CONFIG_PATH,
  siteConfigScript,
} from './rear-config.ts';

const host: HostConfig = {
  name: 'node1',
  url: 'local',
  endpoint: { kind: 'local' },
  sshOptions: [],
  target: 'dr',
  schedule: undefined,
  copies: undefined,
  rpoMs: undefined,
  exclude: ['/srv/scratch'],
  rear: { firmware: false, userInputTimeoutMs: 10_000 },
};

function stored(layoutDigest: string | null): HostManifest | null {
  if (layoutDigest === null) return null;
  return {
    host: 'node1',
    copies: 2,
    digest: 'blake3',
    rescue: [{ facts: { layoutDigest } } as HostManifest['rescue'][number]],
    backup: [],
  };
}

test('new rescue media: first backup, none stored, config or layout changed, stored ones for another layout', () => {
  assert.match(rescueReason('none', null, stored('a'), false) ?? '', /no disk layout saved/);
  assert.match(rescueReason('unchanged', 'a', null, false) ?? '', /holds no rescue media/);
  assert.match(rescueReason('unchanged', 'a', stored('a'), true) ?? '', /configuration changed/);
  assert.match(rescueReason('changed', 'a', stored('a'), false) ?? '', /layout changed/);
  assert.match(rescueReason('unchanged', 'b', stored('a'), false) ?? '', /another layout/);
  assert.equal(rescueReason('unchanged', 'a', stored('a'), false), null, 'nothing changed: no media');
});

test('the archive leaves out VM images, Haven’s work, stores, cache drives and the operator’s excludes', () => {
  const ex = backupExcludes(host, { cacheMounts: ['/mnt/cache1'], storeDirs: ['/srv/haven'] });
  for (const p of ['/var/lib/libvirt/images/*', '/srv/haven/*', '/mnt/cache1/*', '/srv/scratch']) {
    assert.ok(ex.includes(p), `${p} in ${ex.join(' ')}`);
  }
  const conf = rearConfig(host, { cacheMounts: ['/mnt/cache1'], storeDirs: [] }, '.haven-cache');
  assert.match(conf, /^OUTPUT=ISO$/m);
  assert.match(conf, /^BACKUP=NETFS$/m);
  assert.match(conf, /^ISO_DEFAULT=boothd$/m, 'media booted by mistake never recover over a host');
  assert.match(conf, /^USER_INPUT_TIMEOUT=10$/m);
  assert.match(conf, /^FIRMWARE_FILES=\( 'no' \)$/m);
  assert.match(conf, /BACKUP_PROG_EXCLUDE\+=\( .*'\/mnt\/cache1\/\*'/);
  // The cache drive's signature comes back after recovery, so the drive is a cache drive again.
  assert.match(conf, /POST_RECOVERY_COMMANDS\+=.*\/mnt\/cache1\/\.haven-cache/);
});

test('a drill boots the media’s rear entry with its command line, without ReaR’s own mode words', () => {
  const cfg = `default boothd
label boothd
  kernel chain.c32
label rear
  kernel kernel
  append initrd=initrd.cgz root=/dev/ram0 vga=normal rw console=ttyS0,115200 auto_recover
label other
  kernel k2
  append initrd=i2
`;
  assert.deepEqual(bootEntry(cfg), {
    kernel: 'kernel',
    initrd: 'initrd.cgz',
    append: 'root=/dev/ram0 vga=normal rw console=ttyS0,115200',
  });
  assert.equal(bootEntry('label boothd\n  kernel chain.c32\n'), null);
});

test('site.conf gets Haven’s line once, an older one replaced, the operator’s lines kept, and it sources cleanly', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-site-conf-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const site = join(dir, 'site.conf');
  await writeFile(
    site,
    'OPERATOR_SETTING=1\nif test -f /etc/rear-release; then source /x; fi # haven: rescue systems made by Haven recover with its configuration\n',
  );
  const script = siteConfigScript().replaceAll(SITE_CONFIG_PATH, site);
  execFileSync('bash', ['-c', script]);
  execFileSync('bash', ['-c', script]);
  assert.equal(await readFile(site, 'utf8'), `OPERATOR_SETTING=1\n${SITE_CONFIG_LINE}\n`);
  // ReaR's Source stops on a non-zero status: outside a rescue system the line must return 0.
  assert.equal(
    execFileSync('bash', ['-c', `source ${site}; echo "rc=$?"`])
      .toString()
      .trim(),
    'rc=0',
  );
});
