/**
 * A hostile sender against the real receiver: `haven receive --stdio` as a child process (the
 * command an ssh target runs), writing into a filesystem store, driven by a StreamSender that
 * sends whatever an attacker holding a primary's credentials would. Whatever it sends, what the
 * receiver stores must be safe to keep and to boot at the DR site (issue 13).
 *
 * The file is a harness (`hostileReceiver`, `sendFirstRun`) plus one section per kind of attack:
 * - definitions (issue 13.1): every element that names a host path, runs a host program or
 *   relaxes the DR host's confinement is removed or renamed in `definitions/<server>.xml`, and
 *   reported; what the DR host's own configuration allows for one server is kept, and logged;
 *   a definition no removal can make safe is refused before anything is staged.
 * - size bombs (issue 13.2): disks declared huge and sent as zero extents cost the receiver what
 *   was sent: digest files and images stay sparse.
 * - a sender that stops reading: it keeps asking and reads no answer; the receiver buffers at
 *   most its answer budget, then ends the session with a stable code and frees the server.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { DEFAULT_BOOT_DIRS, isInside } from '../../src/core/definition-rules.ts';
import { DomainXml } from '../../src/core/domain-xml.ts';
import type { HavenError } from '../../src/core/errors.ts';
import { hostPaths } from '../../src/core/test-support/host-paths.ts';
import { encodeDigestsRequest, encodeJson } from '../../src/protocol/codec.ts';
import { PROTOCOL_NAME, PROTOCOL_VERSIONS } from '../../src/protocol/frames.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { type Generation, openFsStore } from '../../src/store/index.ts';
import { HAVEN_BIN, openTarget } from '../../src/transport/index.ts';
import { havenEnv } from '../helpers/haven.ts';
import { C, content, makeMeta, scratch, sendDelta, TEST_ROOT } from './protocol-helpers.ts';

// --- harness -------------------------------------------------------------------------------

export interface HostileReceiver {
  dir: string;
  store: string;
  logs: string;
  sender: StreamSender;
  /** Ends the session and waits for the receiver to exit. */
  close(): Promise<void>;
}

/**
 * A real `haven receive --stdio` into a fresh store, with `config` as the DR host's
 * configuration (HAVEN_CONFIG) and its run log in `<dir>/logs`.
 */
export async function hostileReceiver(
  t: TestContext | { after: (fn: () => unknown) => void },
  name: string,
  config = '',
): Promise<HostileReceiver> {
  const dir = await scratch(t as TestContext, `hostile-${name}`);
  const configFile = join(dir, 'haven.yaml');
  await writeFile(configFile, config);
  // The child inherits this process's environment (transport/child.ts).
  process.env.HAVEN_CONFIG = configFile;
  process.env.HAVEN_LOG_DIR = join(dir, 'logs');
  const store = join(dir, 'store');
  const conn = await openTarget(store, {});
  const sender = await StreamSender.connect(conn.stream, { compression: { algorithm: 'none', level: 0 } });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      try {
        await sender.close();
      } finally {
        await conn.close();
      }
    })();
    return closing;
  };
  // A test that fails before its own close must not leave the receiver running: its pipes would
  // keep this process alive until the runner's per-file limit (seen after a full disk).
  t.after(() => close().catch(() => {}));
  return { dir, store, logs: join(dir, 'logs'), sender, close };
}

/** A first run of `server` (one small disk named `<server>_0`) with this source definition. */
export async function sendFirstRun(
  sender: StreamSender,
  server: string,
  definition: string,
): Promise<Generation> {
  const disks = [{ name: `${server}_0`, size: 2 * C }];
  const meta = makeMeta(server, disks, { sourceDefinition: definition });
  await sender.open(meta);
  const g = await sendDelta(sender, meta, { [`${server}_0`]: content(7, 2 * C) }, [
    { disk: `${server}_0`, kind: 'data', offset: 0, length: 2 * C },
  ]);
  assert.ok(g);
  return g;
}

/** The receiver's run log (its warnings), all files joined. */
export async function receiverLog(logs: string): Promise<string> {
  const files = (await readdir(logs)).filter((f) => f.startsWith('receive-'));
  return (await Promise.all(files.map((f) => readFile(join(logs, f), 'utf8')))).join('\n');
}

// --- definitions (issue 13.1) --------------------------------------------------------------

const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';
/** Where a hostile definition points: if anything of it survives, it names this. */
const PWN = join(TEST_ROOT, 'haven-t-hostile-pwned');

/** A plausible source definition with `extra` in `<domain>`, `os` in `<os>`, `devices` in `<devices>`. */
function definition(
  server: string,
  o: { extra?: string; os?: string; devices?: string; prolog?: string },
): string {
  return `${o.prolog ?? ''}<domain type='kvm' xmlns:qemu='${QEMU_NS}'>
  <name>${server}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type>${o.os ?? ''}</os>
  ${o.extra ?? ''}
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/${server}_0.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
    ${o.devices ?? ''}
  </devices>
</domain>`;
}

interface Case {
  /** Also the server's name. */
  name: string;
  def: Parameters<typeof definition>[1];
  /** Must not be in the stored definition (comments aside). */
  gone: RegExp;
}

const CASES: Case[] = [
  {
    name: 'qemu-commandline',
    def: {
      extra: `<qemu:commandline><qemu:arg value='-chardev'/><qemu:arg value='file,id=pw,path=${PWN}'/><qemu:arg value='-device'/><qemu:arg value='isa-serial,chardev=pw'/></qemu:commandline><qemu:capabilities><qemu:del capability='sandbox'/></qemu:capabilities>`,
    },
    gone: /<qemu:/,
  },
  {
    name: 'filesystem-root',
    def: {
      devices: `<filesystem type='mount' accessmode='passthrough'><source dir='/'/><target dir='hostroot'/></filesystem>`,
    },
    gone: /<filesystem/,
  },
  { name: 'emulator', def: { devices: `<emulator>${PWN}-qemu</emulator>` }, gone: /<emulator/ },
  {
    name: 'kernel-paths',
    def: {
      os: `<kernel>/boot/../etc/shadow</kernel><initrd>${PWN}-initrd</initrd><cmdline>console=ttyS0</cmdline><dtb>/etc/passwd</dtb>`,
    },
    gone: /<kernel|<initrd|<dtb|<cmdline/,
  },
  {
    name: 'firmware-paths',
    def: {
      os: `<loader readonly='yes' type='pflash'>${PWN}-code.fd</loader><nvram template='/etc/shadow'>${PWN}-vars.fd</nvram><acpi><table type='slic'>/etc/ssh/ssh_host_ed25519_key</table></acpi>`,
    },
    gone: /haven-t-hostile-pwned|\/etc\/|<table/,
  },
  {
    name: 'serial-file',
    def: {
      devices: `<serial type='file'><source path='${PWN}-serial'/><target port='0'/><log file='/etc/profile.d/pwn.sh' append='on'/></serial><console type='file'><source path='${PWN}-serial'/><target type='serial' port='0'/></console>`,
    },
    gone: /haven-t-hostile-pwned|\/etc\//,
  },
  {
    name: 'chardev-kinds',
    def: {
      devices: `<serial type='unix'><source mode='connect' path='/run/dbus/system_bus_socket'/><target port='1'/></serial><serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/><protocol type='telnet'/><target port='2'/></serial><serial type='dev'><source path='/dev/sda'/><target port='3'/></serial><parallel type='pipe'><source path='${PWN}-pipe'/><target port='0'/></parallel><channel type='file'><source path='${PWN}-chan'/><target type='virtio' name='x.0'/></channel><channel type='unix'><source mode='bind' path='${PWN}-agent.sock'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel><channel type='tcp'><source mode='connect' host='169.254.169.254' service='80'/><target type='guestfwd' address='10.0.2.100' port='80'/></channel>`,
    },
    gone: /haven-t-hostile-pwned|system_bus|\/dev\/sda|type="tcp"|type="dev"|type="pipe"|guestfwd/,
  },
  {
    name: 'host-devices',
    def: {
      devices: `<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='1' slot='0' function='0'/></source></hostdev><redirdev bus='usb' type='tcp'><source mode='connect' host='10.0.0.1' service='4000'/></redirdev><smartcard mode='host-certificates'><certificate>/etc/pki/a</certificate><certificate>/etc/pki/b</certificate><certificate>/etc/pki/c</certificate><database>/etc/pki/nssdb</database></smartcard><shmem name='pw'><server path='${PWN}.sock'/></shmem><input type='evdev'><source dev='/dev/input/event0' grab='all'/></input><tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm><rng model='virtio'><backend model='random'>/dev/sda</backend></rng><memory model='nvdimm'><source><path>/etc/shadow</path></source><target><size unit='KiB'>131072</size></target></memory><lease><lockspace>x</lockspace><key>y</key><target path='${PWN}-lease'/></lease>`,
    },
    gone: /<hostdev|<redirdev|<smartcard|<shmem|type="evdev"|<tpm|<rng|nvdimm|<lease|\/etc\/|\/dev\//,
  },
  {
    name: 'host-network',
    def: {
      devices: `<interface type='ethernet'><script path='${PWN}-up.sh'/><target dev='eth0' managed='no'/></interface><interface type='bridge'><source bridge='br0'/><script path='${PWN}-up2.sh'/><backend tap='/dev/net/tun'/><rom file='/etc/shadow'/></interface><interface type='vhostuser'><source type='unix' path='${PWN}-ovs.sock' mode='client'/></interface>`,
    },
    gone: /type="ethernet"|<script|<backend|vhostuser|haven-t-hostile-pwned|\/etc\//,
  },
  {
    name: 'confinement',
    def: {
      extra: `<seclabel type='none' model='dac'/><resource><partition>/system.slice</partition></resource><sysinfo type='fwcfg'><entry name='opt/pw' file='/etc/shadow'/></sysinfo><memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>`,
      devices: `<graphics type='vnc' socket='${PWN}-vnc.sock'/><graphics type='sdl' display=':0' xauth='/root/.Xauthority'/><audio id='1' type='file' path='${PWN}.wav'/>`,
    },
    gone: /<seclabel|system\.slice|fwcfg|<source type="file"|socket=|type="sdl"|\.Xauthority|type="file" path/,
  },
  {
    name: 'disks-and-media',
    def: {
      devices: `<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vdb' bus='virtio'/><readonly/></disk><disk type='file' device='cdrom'><source file='/root/secrets.iso'/><target dev='sda' bus='sata'/></disk><disk type='block' device='floppy'><source dev='/dev/sdb'/><target dev='fda'/></disk><disk type='file' device='disk'><source file='/x--&gt;&lt;qemu:commandline&gt;&lt;qemu:arg value="-S"/&gt;&lt;/qemu:commandline&gt;&lt;!--'/><target dev='vdc' bus='virtio'/></disk>`,
    },
    gone: /\/etc\/shadow|secrets\.iso|\/dev\/sdb|<qemu:/,
  },
  {
    name: 'doctype',
    def: { prolog: `<!DOCTYPE domain [<!ENTITY pw SYSTEM "file:///etc/shadow">]><?haven-pi x?>` },
    gone: /DOCTYPE|ENTITY|<\?haven-pi/,
  },
];

describe('hostile definitions through the real receiver', () => {
  let r: HostileReceiver;
  const stored = new Map<string, string>();

  const cleanups: Array<() => unknown> = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  before(async () => {
    r = await hostileReceiver({ after: (fn: () => unknown) => cleanups.push(fn) }, 'defs');
    for (const c of CASES) await sendFirstRun(r.sender, c.name, definition(c.name, c.def));
    await r.close();
    for (const c of CASES)
      stored.set(c.name, await readFile(join(r.store, 'definitions', `${c.name}.xml`), 'utf8'));
  });

  for (const c of CASES) {
    it(`${c.name}: removed or renamed, reported, no host path of the sender's left`, () => {
      const text = stored.get(c.name)!;
      const xml = DomainXml.parse(text);
      const bare = text.replace(/<!--[\s\S]*?-->/g, '');
      assert.doesNotMatch(bare, c.gone);
      assert.equal(xml.doc.getElementsByTagNameNS(QEMU_NS, '*').length, 0, 'nothing for QEMU’s command line');
      assert.match(text, /<!-- haven: removed /, 'the file says what went');
      const active = join(r.store, '.haven', 'active', c.name);
      const image = join(r.store, `${c.name}_${c.name}_0_1.raw`);
      const foreign = hostPaths(xml).filter(
        (p) =>
          p !== image &&
          !isInside(p, active) &&
          p !== '/dev/urandom' &&
          !DEFAULT_BOOT_DIRS.some((d) => isInside(p, d)),
      );
      assert.deepEqual(foreign, [], `paths the sender chose are left in ${text}`);
      // What a server needs stays: its disk from the store, its NIC.
      assert.equal(xml.disks().find((d) => d.target === 'vda')?.path, image);
      assert.equal(
        xml.deviceElements('interface').filter((i) => i.getAttribute('type') === 'network').length,
        1,
      );
    });
  }

  it('file-backed consoles are Haven’s files in the server’s activation directory, twins shared', () => {
    const xml = DomainXml.parse(stored.get('serial-file')!);
    const active = join(r.store, '.haven', 'active', 'serial-file');
    const paths = [...xml.deviceElements('serial'), ...xml.deviceElements('console')].map((s) =>
      xml.child(s, 'source')?.getAttribute('path'),
    );
    assert.deepEqual(paths, [join(active, 'serial0.log'), join(active, 'serial0.log')]);
    assert.equal(
      xml.child(xml.deviceElements('serial')[0]!, 'log')?.getAttribute('file'),
      join(active, 'serial0-log.log'),
    );
  });

  it('the receiver logged each removal as a warning with the allowance that would keep it', async () => {
    const log = await receiverLog(r.logs);
    assert.match(log, /definition: qemu:commandline removed or rewritten/);
    assert.match(log, /definitions\.allow\.filesystem-root: \[filesystem\]/);
    assert.match(log, /definition: devices\/emulator removed or rewritten/);
  });
});

describe('the DR host decides, the sender does not', () => {
  it('an allowance in the DR host’s configuration keeps an element for that server only, logged', async (t) => {
    const r = await hostileReceiver(t, 'allow', 'definitions:\n  allow:\n    trusted-fs: [filesystem]\n');
    const fs = {
      devices: `<filesystem type='mount'><source dir='/srv/share'/><target dir='share'/></filesystem>`,
    };
    await sendFirstRun(r.sender, 'trusted-fs', definition('trusted-fs', fs));
    await sendFirstRun(r.sender, 'other-fs', definition('other-fs', fs));
    await r.close();
    const kept = DomainXml.parse(await readFile(join(r.store, 'definitions', 'trusted-fs.xml'), 'utf8'));
    const other = DomainXml.parse(await readFile(join(r.store, 'definitions', 'other-fs.xml'), 'utf8'));
    assert.equal(kept.deviceElements('filesystem').length, 1);
    assert.equal(other.deviceElements('filesystem').length, 0);
    assert.equal(kept.deviceElements('emulator').length, 0, 'what is not allowed still goes');
    assert.match(
      await receiverLog(r.logs),
      /definition: devices\/filesystem KEPT although the rule removes it .*definitions\.allow\.trusted-fs includes filesystem/,
    );
  });

  it('a definition no removal can make safe is refused before anything is staged', async (t) => {
    const r = await hostileReceiver(t, 'unsafe');
    const lxc = `<domain type='lxc'><name>ct01</name><os><type>exe</type><init>/bin/sh</init></os><devices><filesystem type='mount'><source dir='/'/><target dir='/'/></filesystem></devices></domain>`;
    const meta = makeMeta('ct01', [{ name: 'ct01_0', size: 2 * C }], { sourceDefinition: lxc });
    await assert.rejects(
      r.sender.open(meta),
      (e: HavenError) =>
        e.code === 'DEFINITION_UNSAFE' && e.kind === 'refused' && /domain type "lxc"/.test(e.message),
    );
    // The session goes on: a sound server is received after the refusal.
    await sendFirstRun(r.sender, 'web01', definition('web01', {}));
    await r.close();
    const store = await openFsStore(r.store);
    try {
      assert.deepEqual(await store.listServers(), ['web01']);
    } finally {
      await store.close();
    }
    assert.deepEqual((await readdir(join(r.store, 'definitions'))).sort(), ['web01.xml']);
    assert.deepEqual((await readdir(join(r.store, '.haven', 'servers'))).sort(), ['web01']);
  });
});

// --- size bombs (issue 13.2) ---------------------------------------------------------------

/** Allocated bytes of every file under `dir`. */
async function allocatedUnder(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).blocks * 512;
  }
  return total;
}

describe('size bombs: a declared size costs the receiver what is sent, not what is declared', () => {
  // 15 TiB: ext4 refuses files of 16 TiB (EFBIG) with 4 KiB blocks.
  it('15 TiB disks sent as 20-byte zero extents, first run and incremental', async (t) => {
    const r = await hostileReceiver(t, 'size-bomb');
    const TiB15 = 15 * 2 ** 40;
    const disks = [0, 1, 2, 3].map((i) => ({ name: `bomb_${i}`, size: TiB15 }));
    const zeros = disks.map((d) => ({ disk: d.name, kind: 'zero' as const, offset: 0, length: TiB15 }));
    const started = performance.now();
    const m1 = makeMeta('bomb', disks);
    await r.sender.open(m1);
    const g1 = await sendDelta(r.sender, m1, {}, zeros);
    assert.ok(g1);
    const m2 = makeMeta('bomb', disks, { pointInTime: 'p2', baseGenerationId: g1.id, mode: 'incremental' });
    await r.sender.open(m2);
    const g2 = await sendDelta(r.sender, m2, {}, zeros);
    assert.ok(g2);
    const seconds = (performance.now() - started) / 1000;
    await r.close();
    const allocated = await allocatedUnder(r.store);
    // Dense digest files alone would be 8 GiB per disk and generation.
    assert.ok(allocated < 16 * 1024 * 1024, `the receiver allocated ${allocated} bytes for 60 TiB of zeros`);
    assert.ok(seconds < 120, `two runs took ${seconds.toFixed(1)} s`);
  });
});

// --- a sender that stops reading (issue 13, "Must show") ------------------------------------

function withoutConfig(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { HAVEN_CONFIG: _, ...rest } = env;
  return rest;
}

/** Peak resident memory of a running process so far (VmHWM), in bytes; 0 once it is gone. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kib = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kib ? Number(kib) * 1024 : 0;
}

describe('a sender that stops reading', () => {
  it('asks for 128 MiB of digests and reads none: the receiver ends the session (PROTO_PEER_NOT_READING), bounded in memory, lock released', async (t) => {
    const dir = await scratch(t, 'hostile-not-reading');
    const store = join(dir, 'store');
    const h = await havenEnv(dir);
    // `haven receive --stdio` as an ssh target runs it; its stdout (the answers) is never read.
    const child = spawn(
      process.execPath,
      [HAVEN_BIN, 'receive', '--stdio', '--store', store, '--idle-timeout', '2s'],
      // Without the test helpers' stand-in config path, which names a file that does not exist.
      { env: withoutConfig(h.env), stdio: ['pipe', 'pipe', 'pipe'] },
    );
    t.after(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const server = 'Slow01';
    // A sparse 4 GiB disk: 65536 chunks, so each request asks for 2 MiB of digests.
    const disks = [{ name: `${server}_0`, size: 65536 * C }];
    const meta = makeMeta(server, disks);
    child.stdin.write(
      encodeJson('HELLO', {
        protocol: PROTOCOL_NAME,
        versions: [...PROTOCOL_VERSIONS],
        software: 'hostile',
        compression: ['none'],
        compressionLevel: 0,
        digests: ['blake3', 'sha256'],
      }),
    );
    child.stdin.write(encodeJson('OPEN', meta));
    for (let id = 1; id <= 64; id++)
      child.stdin.write(encodeDigestsRequest({ id, disk: 0, fromChunk: 0, count: 65536 }));
    let peak = 0;
    const started = Date.now();
    const watch = setInterval(() => {
      peakRss(child.pid!).then((p) => {
        peak = Math.max(peak, p);
      });
    }, 100);
    const code = await Promise.race([
      exited,
      new Promise<'still running'>((r) => setTimeout(() => r('still running'), 60_000)),
    ]);
    clearInterval(watch);
    assert.notEqual(code, 'still running', 'the receiver gave up on the sender within a minute');
    assert.notEqual(code, 0);
    assert.ok(Date.now() - started < 40_000);
    assert.match(stderr, /PROTO_PEER_NOT_READING/);
    assert.ok(
      peak > 0 && peak < 256 * 1024 * 1024,
      `peak memory ${peak} bytes: bounded, not the 128 MiB asked for`,
    );
    // The delta was closed on the way out: the server's store lock is free for the next run.
    const fs = await openFsStore(store);
    try {
      const w = await fs.openDelta(meta);
      await w.close();
    } finally {
      await fs.close();
    }
  });
});
