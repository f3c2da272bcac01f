import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyDefinitionRules,
  type DefinitionFacts,
  type DefinitionRules,
  isInside,
  unsafeProblems,
} from './definition-rules.ts';
import { DomainXml } from './domain-xml.ts';
import { HavenError } from './errors.ts';
import { hostPaths } from './test-support/host-paths.ts';

const STORE = '/srv/dr';
const IMAGE = `${STORE}/web01_web01_0_1.raw`;
const ACTIVE = `${STORE}/.haven/active/web01`;

/** A server as a legitimate primary defines it: everything here must survive the rule. */
const LEGIT = `<domain type='kvm'>
  <name>web01</name>
  <uuid>3e9c5bd1-7d4f-4c51-9a3f-0a4b5e1c2d3e</uuid>
  <metadata><app:owner xmlns:app='urn:example'>ops</app:owner></metadata>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <resource><partition>/machine</partition></resource>
  <os firmware='efi'>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/><smm state='on'/></features>
  <cpu mode='host-model'/>
  <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/><source file='${IMAGE}'/><target dev='vda' bus='virtio'/><boot order='1'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/><readonly/></disk>
    <controller type='usb' model='qemu-xhci'/>
    <controller type='pci' model='pcie-root'/>
    <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/><model type='virtio'/></interface>
    <interface type='bridge'><source bridge='br0'/><model type='virtio'/><rom bar='off'/></interface>
    <console type='pty'><target type='serial' port='0'/></console>
    <serial type='pty'><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
    <input type='tablet' bus='usb'/>
    <graphics type='spice' autoport='yes'><listen type='address'/></graphics>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <sound model='ich9'/>
    <audio id='1' type='spice'/>
    <video><model type='virtio' heads='1' primary='yes'/></video>
    <watchdog model='i6300esb' action='reset'/>
    <memballoon model='virtio'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
  </devices>
</domain>`;

function facts(over: Partial<DefinitionFacts> = {}): DefinitionFacts {
  return {
    server: 'web01',
    isStoreImage: (d) => d.path === IMAGE,
    hostFiles: { files: ACTIVE, sockets: `${ACTIVE}/sockets` },
    ...over,
  };
}

function apply(text: string, rules?: DefinitionRules, f = facts()) {
  const xml = DomainXml.parse(text);
  const report = applyDefinitionRules(xml, rules, f);
  return { xml, report, text: xml.toString() };
}

test('a legitimate server keeps everything it needs to boot and serve', () => {
  const { xml, report } = apply(LEGIT);
  assert.deepEqual(report.removed, []);
  assert.deepEqual(report.allowed, []);
  assert.deepEqual(report.moved, []);
  const before = DomainXml.parse(LEGIT);
  for (const name of [
    'disk',
    'controller',
    'interface',
    'console',
    'serial',
    'channel',
    'input',
    'graphics',
    'sound',
    'audio',
    'video',
    'watchdog',
    'memballoon',
    'rng',
    'tpm',
  ])
    assert.equal(xml.deviceElements(name).length, before.deviceElements(name).length, name);
  assert.equal(xml.disks()[0]!.path, IMAGE);
  assert.match(
    xml.toString(),
    /<loader readonly="yes" type="pflash">\/usr\/share\/OVMF\/OVMF_CODE_4M\.fd<\/loader>/,
  );
  assert.match(
    xml.toString(),
    /<app:owner xmlns:app="urn:example">ops<\/app:owner>/,
    'metadata of other tools stays',
  );
  assert.match(xml.toString(), /<partition>\/machine<\/partition>/);
});

/** The reproduction and its relatives: each must be gone, each reported with its rule. */
const HOSTILE = `<!DOCTYPE domain [<!ENTITY x "y">]>
<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web01</name>
  <memory unit='KiB'>1048576</memory>
  <resource><partition>/system.slice</partition></resource>
  <sysinfo type='fwcfg'><entry name='opt/x' file='/etc/shadow'/></sysinfo>
  <memoryBacking><source type='file'/></memoryBacking>
  <blkiotune><device><path>/dev/sda</path><weight>500</weight></device></blkiotune>
  <bootloader>/usr/bin/pygrub</bootloader>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader type='rom'>/etc/shadow</loader>
    <nvram template='/etc/passwd'>/var/lib/libvirt/qemu/nvram/other_VARS.fd</nvram>
    <kernel>/root/vmlinuz</kernel>
    <initrd>/usr/share/OVMF/../../../etc/shadow</initrd>
    <cmdline>console=ttyS0</cmdline>
    <acpi><table type='slic'>/etc/ssh/ssh_host_ed25519_key</table></acpi>
    <init>/bin/sh</init>
  </os>
  <seclabel type='none'/>
  <devices>
    <emulator>/tmp/evil-qemu</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${IMAGE}'><seclabel model='dac' relabel='no'/></source><target dev='vda' bus='virtio'/><mirror type='file' file='/etc/cron.d/x'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/etc/shadow'/><target dev='vdb' bus='virtio'/><readonly/></disk>
    <disk type='block' device='floppy'><source dev='/dev/sdb'/><target dev='fda'/></disk>
    <disk type='file' device='cdrom'><source file='/root/secrets.iso'/><target dev='sda' bus='sata'/></disk>
    <filesystem type='mount' accessmode='passthrough'><source dir='/'/><target dir='hostroot'/></filesystem>
    <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='1' slot='0' function='0'/></source></hostdev>
    <redirdev bus='usb' type='tcp'><source mode='connect' host='10.0.0.1' service='4000'/></redirdev>
    <smartcard mode='host-certificates'><certificate>/etc/pki/a</certificate><database>/etc/pki/nssdb</database></smartcard>
    <shmem name='x'><server path='/run/x.sock'/></shmem>
    <lease><lockspace>x</lockspace><key>k</key><target path='/etc/passwd'/></lease>
    <memory model='nvdimm'><source><path>/etc/shadow</path></source><target><size unit='KiB'>524288</size></target></memory>
    <interface type='ethernet'><script path='/tmp/pwn.sh'/><target dev='eth0'/></interface>
    <interface type='network'><source network='default'/><script path='/tmp/pwn2.sh'/><backend tap='/dev/net/tun' vhost='/dev/vhost-net'/><target dev='vnet7'/><rom file='/etc/shadow'/></interface>
    <interface type='vhostuser'><source type='unix' path='/run/ovs.sock' mode='client'/></interface>
    <input type='passthrough' bus='virtio'><source evdev='/dev/input/event0'/></input>
    <graphics type='vnc' socket='/etc/vnc.sock'><listen type='socket' socket='/etc/vnc2.sock'/></graphics>
    <graphics type='sdl' display=':0' xauth='/root/.Xauthority'/>
    <video><model type='virtio'><acceleration accel3d='yes' rendernode='/dev/dri/renderD128'/></model></video>
    <audio id='1' type='file' path='/etc/audio.wav'/>
    <rng model='virtio'><backend model='random'>/dev/sda</backend></rng>
    <rng model='virtio'><backend model='egd' type='tcp'><source mode='connect' host='1.2.3.4' service='1'/></backend></rng>
    <tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>
    <pstore backend='acpi-erst'><path>/etc/shadow</path><size unit='KiB'>8</size></pstore>
    <serial type='file'><source path='/etc/cron.d/haven'/><target port='0'/><log file='/etc/profile.d/x.sh' append='on'/></serial>
    <serial type='unix'><source mode='bind' path='/run/libvirt/virtqemud-sock'/><target port='1'/></serial>
    <serial type='unix'><source mode='connect' path='/run/dbus/system_bus_socket'/><target port='2'/></serial>
    <serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/><protocol type='telnet'/><target port='3'/></serial>
    <serial type='dev'><source path='/dev/sda'/><target port='4'/></serial>
    <parallel type='pipe'><source path='/tmp/pipe'/><target port='0'/></parallel>
    <console type='file'><source path='/etc/cron.d/haven'/><target type='serial' port='0'/></console>
    <channel type='tcp'><source mode='connect' host='169.254.169.254' service='80'/><target type='guestfwd' address='10.0.2.1' port='80'/></channel>
    <channel type='unix'><source mode='bind' path='/etc/agent.sock'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <channel type='file'><source path='/etc/chan'/><target type='virtio' name='x.0'/></channel>
    <channel type='pipe'><source path='/tmp/p'/><target type='virtio' name='y.0'/></channel>
  </devices>
  <qemu:commandline><qemu:arg value='-chardev'/><qemu:arg value='file,id=x,path=/etc/pwned'/></qemu:commandline>
  <qemu:capabilities><qemu:add capability='blockdev'/></qemu:capabilities>
</domain>`;

test('a hostile definition loses every host path, program and relaxation; each is reported', () => {
  const { xml, report, text } = apply(HOSTILE);
  // What is left, without the comments that say what went.
  const bare = text.replace(/<!--[\s\S]*?-->/g, '');
  assert.doesNotMatch(bare, /DOCTYPE|ENTITY/);
  assert.doesNotMatch(
    bare,
    /<qemu:|<emulator|<filesystem|<hostdev|<redirdev|<smartcard|<shmem|<lease|<pstore|<bootloader|<mirror|<init>|<sysinfo|<path>|<resource|<script|<backend tap|nvdimm|type="ethernet"|vhostuser|passthrough|sdl/,
  );
  // No host path is left but the store image, the firmware directory and Haven's own files.
  const left = hostPaths(xml);
  const allowed = left.filter((p) => p === IMAGE || p.startsWith(`${ACTIVE}/`) || p === '/dev/urandom');
  assert.deepEqual(left, allowed, `paths left: ${left.join(', ')}`);
  assert.deepEqual(
    xml.disks().map((d) => [d.target, d.path]),
    [
      ['vda', IMAGE],
      ['fda', undefined],
      ['sda', undefined],
    ],
  );
  // Ports that reached outside QEMU are ptys now (parallel: null); Haven names the files.
  assert.deepEqual(
    xml
      .deviceElements('serial')
      .map((s) => [s.getAttribute('type'), xml.child(s, 'source')?.getAttribute('path') ?? null]),
    [
      ['file', `${ACTIVE}/serial0.log`],
      ['unix', `${ACTIVE}/sockets/serial1.sock`],
      ['pty', null],
      ['pty', null],
      ['pty', null],
    ],
  );
  assert.equal(
    xml.child(xml.deviceElements('serial')[0]!, 'log')?.getAttribute('file'),
    `${ACTIVE}/serial0-log.log`,
  );
  assert.equal(xml.deviceElements('parallel')[0]!.getAttribute('type'), 'null');
  assert.equal(
    xml.child(xml.deviceElements('console')[0]!, 'source')?.getAttribute('path'),
    `${ACTIVE}/serial0.log`,
    'the console twin shares the renamed file',
  );
  assert.deepEqual(
    xml
      .deviceElements('channel')
      .map((c) => [c.getAttribute('type'), xml.child(c, 'source')?.getAttribute('path') ?? null]),
    [
      ['unix', null],
      ['file', `${ACTIVE}/channel1.log`],
    ],
  );
  const rules = new Set(report.removed.map((c) => c.rule));
  for (const r of [
    'namespaces',
    'emulator',
    'boot-files',
    'nvram',
    'disks',
    'filesystem',
    'hostdev',
    'redirdev',
    'smartcard',
    'shmem',
    'lease',
    'memory-devices',
    'interfaces',
    'input',
    'graphics',
    'audio',
    'rng',
    'tpm',
    'chardevs',
    'seclabel',
    'sysinfo',
    'memory-backing',
    'blkiotune',
    'resource',
    'elements',
  ] as const)
    assert.ok(rules.has(r), `a change under ${r}`);
  assert.ok(report.removed.every((c) => c.reason.length > 0 && c.element.length > 0));
  assert.ok(report.removed.some((c) => c.rule === 'namespaces' && c.element === 'qemu:commandline'));
  assert.deepEqual(report.allowed, []);
  // The UEFI variables path is gone, so is a template outside the firmware directories.
  const nvram = xml.child(xml.child(xml.root, 'os')!, 'nvram')!;
  assert.equal(nvram.textContent, '');
  assert.equal(nvram.hasAttribute('template'), false);
  // A ROM loader from outside goes; the default BIOS boots.
  assert.equal(xml.child(xml.child(xml.root, 'os')!, 'loader'), undefined);
  assert.ok(report.moved.some((m) => m.from === '/etc/cron.d/haven' && m.to === `${ACTIVE}/serial0.log`));
});

test('the result passes the rule unchanged: what the receiver stored boots as it is', () => {
  const once = apply(HOSTILE).text;
  const twice = apply(once);
  assert.deepEqual(twice.report.removed, []);
  assert.deepEqual(twice.report.moved, []);
  assert.equal(twice.text, once);
});

test('direct kernel boot only from the DR host’s boot directories; UEFI from its own firmware', () => {
  const def = (kernel: string, loader: string) => `<domain type='qemu'><name>web01</name>
    <os><type>hvm</type><loader readonly='yes' type='pflash'>${loader}</loader><kernel>${kernel}</kernel><initrd>/var/lib/libvirt/boot/initrd.img</initrd><cmdline>console=ttyS0</cmdline></os>
    <devices><disk type='file' device='disk'><source file='${IMAGE}'/><target dev='vda'/></disk></devices></domain>`;
  const inside = apply(def('/var/lib/libvirt/boot/vmlinuz', '/usr/share/OVMF/OVMF_CODE.fd'));
  assert.deepEqual(inside.report.removed, []);

  const outside = apply(def('/home/x/vmlinuz', '/opt/fw/OVMF_CODE.fd'));
  const os = outside.xml.child(outside.xml.root, 'os')!;
  for (const n of ['kernel', 'initrd', 'cmdline'])
    assert.equal(outside.xml.child(os, n), undefined, `${n} goes with the kernel`);
  assert.equal(os.getAttribute('firmware'), 'efi', 'libvirt picks the DR host’s own UEFI firmware');
  assert.equal(outside.xml.child(os, 'loader')?.textContent, '');
  assert.deepEqual(
    outside.report.removed.map((c) => [c.rule, c.element, c.detail]),
    [
      ['boot-files', 'os/kernel', '/home/x/vmlinuz'],
      ['boot-files', 'os/loader', '/opt/fw/OVMF_CODE.fd'],
    ],
  );

  // Read again (a drill of what the receiver stored), the file's own notes say what it lost.
  const again = apply(outside.text);
  assert.deepEqual(again.report.removed, []);
  assert.deepEqual(
    again.report.earlier.map((e) => e.slice(0, e.indexOf(': '))),
    // The loader was rewritten in place (no comment); initrd and cmdline went with the kernel.
    ['os/kernel (/home/x/vmlinuz)'],
  );
  assert.match(again.report.earlier[0]!, /: a host file outside .*boots from its disk instead$/);
  // A sender's look-alike note reaches logs as one line, cut short.
  const forged = apply(
    `<domain type='qemu'><name>web01</name><os><type>hvm</type></os><!-- haven: removed x\nFAKE LOG LINE ${'y'.repeat(400)} --></domain>`,
  );
  assert.equal(forged.report.earlier.length, 1);
  assert.doesNotMatch(forged.report.earlier[0]!, /\n/);
  assert.ok(forged.report.earlier[0]!.length <= 300);

  // A directory the DR host configures (definitions.boot_files) is one of them.
  const configured = apply(def('/home/x/vmlinuz', '/usr/share/OVMF/OVMF_CODE.fd'), {
    bootFiles: ['/home/x'],
    allow: {},
  });
  assert.deepEqual(configured.report.removed, []);
});

test('an operator can allow more for one server, and it is reported as kept', () => {
  const rules: DefinitionRules = { bootFiles: [], allow: { web01: ['filesystem', 'namespaces'] } };
  const { xml, report } = apply(HOSTILE, rules);
  assert.equal(xml.deviceElements('filesystem').length, 1);
  assert.match(xml.toString(), /<qemu:commandline>/);
  assert.deepEqual(
    report.allowed.map((c) => [c.rule, c.element]),
    [
      ['namespaces', 'qemu:commandline'],
      ['namespaces', 'qemu:capabilities'],
      ['filesystem', 'devices/filesystem'],
    ],
  );
  assert.equal(xml.deviceElements('hostdev').length, 0, 'what is not allowed still goes');

  // Allowances are per server: another server's do not apply.
  const other = apply(HOSTILE, { bootFiles: [], allow: { web02: ['all'] } });
  assert.equal(other.xml.deviceElements('filesystem').length, 0);
  assert.deepEqual(other.report.allowed, []);

  // `all` keeps the definition as written (the disks aside) and says so for every element.
  const all = apply(HOSTILE, { bootFiles: [], allow: { web01: ['all'] } });
  assert.deepEqual(all.report.removed, []);
  assert.ok(all.report.allowed.length > 20);
  assert.match(all.text, /\/etc\/cron\.d\/haven/);
});

test('what cannot be made safe is refused with a stable code', () => {
  for (const [text, problem] of [
    ["<domain type='lxc'><name>web01</name></domain>", /domain type "lxc"/],
    [
      "<domain type='kvm'><name>web01</name><os><type>exe</type><init>/bin/sh</init></os></domain>",
      /os type "exe"/,
    ],
    ["<domain type='kvm' xmlns='urn:evil'><name>web01</name></domain>", /namespace urn:evil/],
  ] as const) {
    assert.match(unsafeProblems(DomainXml.parse(text)).join('; '), problem);
    assert.throws(
      () => apply(text, { bootFiles: [], allow: { web01: ['all'] } }),
      (e) =>
        e instanceof HavenError &&
        e.code === 'DEFINITION_UNSAFE' &&
        e.kind === 'refused' &&
        /definitions\/web01\.xml/.test(e.hint ?? ''),
    );
  }
});

test('a second <devices>, <os> or chardev <source> cannot carry what the first may not', () => {
  const { xml, report, text } = apply(`<domain type='kvm'><name>web01</name>
    <os><type>hvm</type></os><os><kernel>/etc/shadow</kernel></os>
    <devices><disk type='file' device='disk'><source file='${IMAGE}'/><target dev='vda'/></disk>
      <serial type='file'><source path='/etc/a'/><source path='/etc/b'/><target port='0'/><log file='/etc/c'/><log file='/etc/d'/></serial></devices>
    <devices><filesystem type='mount'><source dir='/'/><target dir='r'/></filesystem></devices></domain>`);
  assert.equal(xml.doc.getElementsByTagName('devices').length, 1);
  assert.equal(xml.doc.getElementsByTagName('os').length, 1);
  assert.doesNotMatch(text.replace(/<!--[\s\S]*?-->/g, ''), /\/etc\/|<filesystem|<kernel/);
  assert.deepEqual(hostPaths(xml).sort(), [`${ACTIVE}/serial0-log.log`, `${ACTIVE}/serial0.log`, IMAGE]);
  assert.ok(report.removed.some((c) => c.element === 'devices' && c.rule === 'elements'));
});

test('comments say what was removed and cannot be used to smuggle XML in', () => {
  const { text } = apply(
    `<domain type='kvm'><name>web01</name><devices><disk type='file' device='disk'><source file='/x--&gt;&lt;qemu:commandline/&gt;&lt;!--'/><target dev='vdb'/></disk></devices></domain>`,
  );
  const again = DomainXml.parse(text);
  assert.equal(again.disks().length, 0);
  assert.equal(again.doc.getElementsByTagName('qemu:commandline').length, 0);
  assert.match(
    text,
    /<!-- haven: removed devices\/disk\[vdb\] \(\/x- -&gt;|<!-- haven: removed devices\/disk\[vdb\] \(\/x- ->/,
  );
});

test('socket names that cannot fit a unix socket address turn the port into a pty, reported', () => {
  const long = `/${'d'.repeat(100)}`;
  const { xml, report } = apply(
    `<domain type='kvm'><name>web01</name><devices><serial type='unix'><source mode='bind' path='/p/control.sock'/><target port='1'/></serial></devices></domain>`,
    undefined,
    facts({ hostFiles: { files: long, sockets: long } }),
  );
  assert.equal(xml.deviceElements('serial')[0]!.getAttribute('type'), 'pty');
  assert.match(report.removed[0]!.reason, /107 bytes/);
  // A prefix that does not fit falls back to the bare name.
  const mid = `/${'m'.repeat(90)}`;
  const p = apply(
    `<domain type='kvm'><name>web01</name><devices><serial type='unix'><source mode='bind' path='/p/control.sock'/><target port='1'/></serial></devices></domain>`,
    undefined,
    facts({ hostFiles: { files: mid, sockets: mid, prefix: 'a-long-restored-name-' } }),
  );
  assert.equal(xml.deviceElements('serial').length, 1);
  assert.equal(
    p.xml.child(p.xml.deviceElements('serial')[0]!, 'source')?.getAttribute('path'),
    `${mid}/serial0.sock`,
  );
});

test('paths are compared after resolving . and ..', () => {
  assert.equal(isInside('/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF'), true);
  assert.equal(isInside('/usr/share/OVMF/../../../etc/shadow', '/usr/share/OVMF'), false);
  assert.equal(isInside('/usr/share/OVMFX/a', '/usr/share/OVMF'), false);
  assert.equal(isInside('relative/a', '/usr/share/OVMF'), false);
  assert.equal(isInside('/usr/share/OVMF', '/usr/share/OVMF'), false);
});
