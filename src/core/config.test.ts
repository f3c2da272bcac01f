import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  ConfigNotFoundError,
  defaultConfig,
  effectiveCopies,
  formatPath,
  type HavenConfig,
  loadConfig,
  loadConfigIfPresent,
  MAX_CONFIG_BYTES,
  nextRun,
  parseConfig,
} from './config.ts';

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'haven.yaml');
const NOW = new Date('2026-03-10T12:00:00Z');

/** A minimal valid file that each invalid case changes in one place. */
const BASE = `
targets:
  dr1:
    url: ssh://root@dr1.example.com/srv/haven
jobs:
  nightly:
    servers: [web01]
    target: dr1
    schedule: "30 1 * * *"
`;

function problemsOf(text: string): ConfigError['problems'] {
  try {
    parseConfig(text, 'test.yaml', NOW);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.equal(e.code, 'CONFIG_INVALID');
    assert.equal(e.kind, 'config');
    return e.problems;
  }
  assert.fail('config was accepted');
}

/** Asserts the file is rejected with exactly one problem at `path` whose message matches. */
function rejects(text: string, path: string, message: RegExp, line?: number): void {
  const problems = problemsOf(text);
  assert.equal(problems.length, 1, JSON.stringify(problems, null, 2));
  const [p] = problems;
  assert.equal(p!.path, path);
  assert.match(p!.message, message);
  if (line !== undefined) assert.equal(p!.line, line);
}

function tmpDir(t: { after: (fn: () => void) => void }): string {
  const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, 'haven-t-cat-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('the full example parses, with units converted and defaults applied', () => {
  const c = loadConfig(EXAMPLE, NOW);
  assert.equal(c.file, EXAMPLE);
  assert.equal(c.timezone, 'Europe/Berlin');
  assert.deepEqual(Object.keys(c.targets), ['dr1', 'dr2', 'usb']);

  const dr1 = c.targets.dr1!;
  assert.deepEqual(dr1.endpoint, {
    kind: 'ssh',
    user: 'root',
    host: 'dr1.example.com',
    port: undefined,
    path: '/srv/haven',
  });
  assert.equal(dr1.url, 'ssh://root@dr1.example.com/srv/haven');
  assert.equal(dr1.copies, 3);
  assert.equal(dr1.bandwidth, 50 * 1024 ** 2);
  assert.equal(dr1.compress, 3);
  assert.deepEqual(dr1.ssh, {
    options: ['-o', 'ConnectTimeout=10', '-i', '/root/.ssh/haven_dr'],
    command: '/usr/local/bin/haven',
  });

  const dr2 = c.targets.dr2!;
  assert.deepEqual(dr2.endpoint, { kind: 'tls', host: 'dr2.example.com', port: 8471 });
  assert.equal(dr2.compress, 3, 'remote targets compress by default');
  assert.equal(dr2.bandwidth, 0);
  assert.equal(dr2.tls?.tokenFile, '/etc/haven/tls/dr2.token');

  const usb = c.targets.usb!;
  assert.deepEqual(usb.endpoint, { kind: 'local', path: '/mnt/dr-usb/haven' });
  assert.equal(usb.compress, 0, 'local targets do not compress by default');
  assert.equal(usb.ssh, undefined);

  const nightly = c.jobs.nightly!;
  assert.deepEqual(nightly.servers, ['web01', 'db01', 'app*']);
  assert.deepEqual(nightly.targets, ['dr1']);
  assert.equal(nightly.schedule, '30 1 * * *');
  assert.equal(nightly.consistency, 'live');
  assert.equal(nightly.rpoMs, 26 * 3_600_000);
  assert.equal(nightly.parallel, 2);
  assert.equal(nightly.retries, 2);
  assert.equal(nightly.retryBackoffMs, 60_000);
  assert.equal(nightly.buffer, 128 * 1024 ** 2);
  assert.equal(nightly.cache, false);
  assert.equal(effectiveCopies(nightly, dr1), 3);

  const offsite = c.jobs.offsite!;
  assert.deepEqual(offsite.targets, ['dr1', 'dr2']);
  assert.equal(offsite.cache, true);
  assert.equal(effectiveCopies(offsite, dr1), 2, 'the job overrides the target');
  assert.equal(offsite.buffer, 64 * 1024 ** 2, 'default buffer');
  assert.equal(c.jobs['weekly-usb']!.consistency, 'shutdown');

  const weekly = c.drills.weekly!;
  assert.equal(weekly.store, '/srv/haven');
  assert.deepEqual(weekly.bootMarker, { serial: 'login:' });
  assert.equal(weekly.timeoutMs, 300_000);
  assert.deepEqual({ ...weekly.overrides.win01 }, { bootMarker: { agent: true }, timeoutMs: 900_000 });

  assert.deepEqual(c.alerts.email?.to, ['ops@example.com']);
  assert.equal(c.alerts.email?.smtp, 'smtp://mail.example.com:25');
  assert.equal(c.alerts.webhook?.minSeverity, 'warning');
  assert.equal(c.cache.signature, '.dr_cache');
  assert.deepEqual(c.daemon.listen, { host: '127.0.0.1', port: 8470 });
  assert.deepEqual(c.warnings, []);
});

test('name lookups never reach Object.prototype', () => {
  const c = parseConfig(BASE, 'test.yaml', NOW);
  assert.equal(c.targets.constructor, undefined);
  assert.equal(c.jobs.toString, undefined);
  assert.equal(defaultConfig().targets.hasOwnProperty, undefined);
});

test('defaults of a minimal file and of no file at all', () => {
  const c = parseConfig(BASE, 'test.yaml', NOW);
  const job = c.jobs.nightly!;
  assert.equal(job.consistency, 'live');
  assert.equal(job.rpoMs, undefined);
  assert.equal(job.parallel, 1);
  assert.equal(job.retries, 2);
  assert.equal(job.copies, undefined);
  assert.equal(c.targets.dr1!.copies, 3);
  assert.deepEqual(c.targets.dr1!.ssh, { options: [], command: 'haven' });
  assert.equal(c.timezone, undefined);

  for (const empty of [
    parseConfig('', 'empty.yaml'),
    parseConfig('jobs:\ntargets:\n', 'nulls.yaml'),
    defaultConfig(),
  ]) {
    assert.deepEqual(Object.keys(empty.targets), []);
    assert.deepEqual(Object.keys(empty.jobs), []);
    assert.deepEqual(empty.alerts, { email: undefined, webhook: undefined });
    assert.equal(empty.cache.signature, '.dr_cache');
    assert.deepEqual(empty.daemon.listen, { host: '127.0.0.1', port: 8470 });
  }
  assert.equal(defaultConfig().file, null);
});

test('wrong type: named by key path, with what was expected and what was found', () => {
  rejects(
    BASE.replace('target: dr1', 'target: dr1\n    parallel: "2"'),
    'jobs.nightly.parallel',
    /expected a whole number from 1 to 64, got "2"/,
    9,
  );
  rejects(
    BASE.replace('servers: [web01]', 'servers: web01'),
    'jobs.nightly.servers',
    /expected a list of server names or glob patterns, got "web01"/,
  );
  rejects(
    BASE.replace('  dr1:\n    url:', '  dr1:\n    copies: 2.5\n    url:'),
    'targets.dr1.copies',
    /whole number from 1 to 100, got number 2.5/,
  );
  rejects(`${BASE}    cache: yes\n`, 'jobs.nightly.cache', /expected true or false, got "yes"/);
  rejects(
    `${BASE}    consistency: crash\n`,
    'jobs.nightly.consistency',
    /one of "live", "shutdown", got "crash"/,
  );
  rejects(
    `${BASE}daemon: 8470\n`,
    'daemon',
    /expected daemon settings \(keys: listen, tls_proxy, progress_streams, progress_streams_per_client\), got number 8470/,
  );
  rejects('- a\n- b\n', '', /expected the Haven configuration .*got a list/);
});

test('unknown keys are errors, with a suggestion for near misses', () => {
  rejects(
    BASE.replace('    url:', '    copys: 3\n    url:'),
    'targets.dr1.copys',
    /unknown key \(did you mean copies\?\); expected one of: url, copies/,
    4,
  );
  rejects(`${BASE}    shedule: "0 1 * * *"\n`, 'jobs.nightly.shedule', /did you mean schedule\?/);
  rejects(`${BASE}archive: 5\n`, 'archive', /^unknown key; expected one of: timezone, targets/);
  rejects(
    `${BASE}alerts:\n  email: { to: a@b.co, from: h@b.co, smtp: "smtp://m.b.co", cc: x@b.co }\n`,
    'alerts.email.cc',
    /unknown key/,
  );
});

test('bad cron expressions, including ones that never fire', () => {
  rejects(
    BASE.replace('30 1 * * *', '61 1 * * *'),
    'jobs.nightly.schedule',
    /invalid cron expression "61 1 \* \* \*": Invalid value for minute: 61/,
    9,
  );
  rejects(
    BASE.replace('30 1 * * *', '30 1 * *'),
    'jobs.nightly.schedule',
    /invalid cron expression.*5 fields/,
  );
  rejects(
    BASE.replace('30 1 * * *', '0 30 1 * * *'),
    'jobs.nightly.schedule',
    /invalid cron expression.*6 parts/,
  );
  rejects(BASE.replace('30 1 * * *', '0 0 30 2 *'), 'jobs.nightly.schedule', /never fires/);
  rejects(
    BASE.replace('"30 1 * * *"', '5'),
    'jobs.nightly.schedule',
    /expected a cron expression .* got number 5/,
  );
  // nicknames and names of days are fine
  parseConfig(BASE.replace('30 1 * * *', '@daily'), 'test.yaml', NOW);
  parseConfig(BASE.replace('30 1 * * *', '0 4 * * sun'), 'test.yaml', NOW);
});

test('bad size, rate and duration', () => {
  rejects(
    `${BASE}    buffer: lots\n`,
    'jobs.nightly.buffer',
    /expected a size such as 4096, 512KiB, 50MiB or 2GiB, got "lots"/,
  );
  rejects(`${BASE}    buffer: 10KiB\n`, 'jobs.nightly.buffer', /from 1MiB to 4GiB, got "10KiB"/);
  rejects(
    BASE.replace('    url:', '    bandwidth: 50 furlongs/s\n    url:'),
    'targets.dr1.bandwidth',
    /expected a rate such as 50MiB\/s .*got "50 furlongs\/s"/,
  );
  rejects(
    `${BASE}    rpo: soon\n`,
    'jobs.nightly.rpo',
    /expected a duration such as 90s, 15m, 26h or 1d12h, got "soon"/,
  );
  rejects(`${BASE}    retry_backoff: -5\n`, 'jobs.nightly.retry_backoff', /expected a duration/);
  rejects(`${BASE}    rpo: 0s\n`, 'jobs.nightly.rpo', /at least 1s/);
});

test('a job naming an unknown target is an error at that key path', () => {
  rejects(
    BASE.replace('target: dr1', 'target: dr9'),
    'jobs.nightly.target',
    /unknown target "dr9"; defined targets: dr1/,
    8,
  );
  rejects(
    BASE.replace('target: dr1', 'targets: [dr1, dr7]'),
    'jobs.nightly.targets[1]',
    /unknown target "dr7"/,
  );
  rejects(BASE.replace('target: dr1', 'targets: [dr1, dr1]'), 'jobs.nightly.targets[1]', /listed twice/);
  rejects('jobs:\n  j:\n    servers: [a]\n    target: x\n', 'jobs.j.target', /no targets are defined/);
  rejects(
    'targets: [dr1]\njobs:\n  j:\n    servers: [a]\n    target: dr1\n',
    'targets',
    /expected a mapping from target names/,
  );
});

test('target and targets: exactly one of them', () => {
  rejects(
    BASE.replace('target: dr1', 'target: dr1\n    targets: [dr1]'),
    'jobs.nightly.targets',
    /either target: NAME or targets: \[NAME, \.\.\.\], not both/,
    9,
  );
  rejects(
    BASE.replace('    target: dr1\n', ''),
    'jobs.nightly.target',
    /required: expected target: NAME or targets/,
  );
  rejects(BASE.replace('target: dr1', 'targets: []'), 'jobs.nightly.targets', /at least one target/);
});

test('server lists: not empty, valid patterns, not only exclusions', () => {
  rejects(BASE.replace('servers: [web01]', 'servers: []'), 'jobs.nightly.servers', /at least one server/, 7);
  rejects(
    BASE.replace('servers: [web01]', 'servers: ["!test-*"]'),
    'jobs.nightly.servers',
    /only "!" exclusions/,
  );
  rejects(
    BASE.replace('servers: [web01]', 'servers: [web01, "db/01"]'),
    'jobs.nightly.servers[1]',
    /not a server name or glob pattern/,
  );
  rejects(BASE.replace('servers: [web01]', 'servers: ["web[01"]'), 'jobs.nightly.servers[0]', /unclosed \[/);
  rejects(
    BASE.replace('    servers: [web01]\n', ''),
    'jobs.nightly.servers',
    /required: expected a list of server names/,
  );
});

test('target URLs and their ssh/tls settings', () => {
  const target = (body: string) => `targets:\n  t:\n${body}`;
  rejects(target('    url: srv/haven\n'), 'targets.t.url', /must be absolute/);
  rejects(target('    url: ftp://x/y\n'), 'targets.t.url', /expected an absolute path, ssh:\/\//);
  rejects(target('    url: ssh://host\n'), 'targets.t.url', /names no store directory/);
  rejects(target('    url: ssh://u:pw@host/srv\n'), 'targets.t.url', /carries a password/);
  rejects(target('    url: ssh://host:99999/srv\n'), 'targets.t.url', /expected an absolute path, ssh/);
  rejects(
    target('    url: tls://host\n    tls: { ca: /ca, token_file: /t }\n'),
    'targets.t.url',
    /needs a port/,
  );
  rejects(
    target('    url: tls://host:1/x\n    tls: { ca: /ca, token_file: /t }\n'),
    'targets.t.url',
    /takes no path/,
  );
  rejects(target('    url: tls://host:8471\n'), 'targets.t.tls', /required for a tls:\/\/ target/);
  rejects(
    target('    url: tls://host:8471\n    tls: { ca: /ca }\n'),
    'targets.t.tls',
    /cert and key, or token_file/,
  );
  rejects(
    target('    url: tls://host:8471\n    tls: { ca: /ca, cert: /c }\n'),
    'targets.t.tls.key',
    /cert and key go together/,
  );
  rejects(
    target('    url: /srv/haven\n    ssh: { command: haven }\n'),
    'targets.t.ssh',
    /only to ssh:\/\/ URLs.*a local path/,
  );
  rejects(
    target('    url: ssh://h/srv\n    ssh: { options: "-v" }\n'),
    'targets.t.ssh.options',
    /list of ssh command-line arguments/,
  );
  rejects(target('    url: /srv\n    compress: 25\n'), 'targets.t.compress', /from 0 to 19/);

  const c = parseConfig(target('    url: ssh://backup@[fd00::5]:2222/srv/dr%20store/\n'), 'test.yaml', NOW);
  assert.deepEqual(c.targets.t!.endpoint, {
    kind: 'ssh',
    user: 'backup',
    host: '[fd00::5]',
    port: 2222,
    path: '/srv/dr store',
  });
  const local = parseConfig(target('    url: /srv//haven/\n'), 'test.yaml', NOW);
  assert.deepEqual(local.targets.t!.endpoint, { kind: 'local', path: '/srv/haven' });
  assert.equal(local.targets.t!.reflink, true);
  rejects(target('    url: /srv\n    reflink: no\n'), 'targets.t.reflink', /true or false/);
  const separate = parseConfig(target('    url: /srv\n    reflink: false\n'), 'test.yaml', NOW);
  assert.equal(separate.targets.t!.reflink, false);

  // LVM and rbd stores, named by the query as on the command line (docs/store-lvm.md, store-rbd.md).
  const endpoint = (url: string) =>
    parseConfig(target(`    url: "${url}"\n`), 'test.yaml', NOW).targets.t!.endpoint;
  assert.deepEqual(endpoint('ssh://root@dr1/srv/haven?lvm=vg_dr0,vg_dr1'), {
    kind: 'ssh',
    user: 'root',
    host: 'dr1',
    port: undefined,
    path: '/srv/haven',
    lvm: 'vg_dr0,vg_dr1',
  });
  assert.deepEqual(endpoint('file:///srv/haven?rbd=rbd%3A%2F%2Fhaven%40ceph%2Fdr'), {
    kind: 'local',
    path: '/srv/haven',
    rbd: 'rbd://haven@ceph/dr',
  });
  assert.deepEqual(endpoint('file:///srv/haven'), { kind: 'local', path: '/srv/haven' });
  // The url as jobs read it again keeps the store's query (it once dropped it: an fs store).
  for (const url of [
    'ssh://root@dr1/srv/haven?lvm=vg_dr0,vg_dr1',
    'file:///srv/haven?rbd=rbd%3A%2F%2Fh%40c%2Fdr',
  ]) {
    assert.equal(parseConfig(target(`    url: "${url}"\n`), 'test.yaml', NOW).targets.t!.url, url);
  }
  rejects(
    target('    url: "ssh://h/srv?copies=3"\n'),
    'targets.t.url',
    /the only query a store URL may carry/,
  );
  rejects(target('    url: "ssh://h/srv?lvm=vg;rm"\n'), 'targets.t.url', /not a list of volume groups/);
  rejects(target('    url: "tls://h:8471?lvm=vg"\n'), 'targets.t.url', /query or fragment/);
  rejects(target('    url: "file://host/srv"\n'), 'targets.t.url', /names a local path/);
});

test('names of targets, jobs and drills must be safe names', () => {
  rejects(
    BASE.replace('  dr1:', '  "dr 1":').replace('target: dr1', 'target: "dr 1"'),
    'targets["dr 1"]',
    /invalid target name "dr 1"/,
    3,
  );
  rejects(`${BASE}  ../evil:\n    servers: [a]\n    target: dr1\n`, 'jobs["../evil"]', /invalid job name/);
});

test('drills: store path, boot markers and per-server overrides', () => {
  const drill = (body: string) => `drills:\n  d:\n    store: /srv/haven\n${body}`;
  rejects(drill('    servers: ["*"]\n'), 'drills.d.boot_marker', /required: expected a boot marker/);
  rejects(
    drill('    servers: ["*"]\n    boot_marker: { serial: "login:", agent: true }\n'),
    'drills.d.boot_marker',
    /exactly one of/,
  );
  rejects(
    drill('    servers: ["*"]\n    boot_marker: { agent: false }\n'),
    'drills.d.boot_marker.agent',
    /expected true/,
  );
  rejects(
    drill('    servers: ["*"]\n    boot_marker: login\n'),
    'drills.d.boot_marker',
    /expected a boot marker/,
  );
  rejects(
    drill('    servers: [a]\n    boot_marker: { agent: true }\n    overrides: { "a*": { timeout: 1m } }\n'),
    'drills.d.overrides["a*"]',
    /keyed by server name/,
  );
  rejects(
    'drills:\n  d:\n    store: srv\n    servers: [a]\n    boot_marker: { agent: true }\n',
    'drills.d.store',
    /absolute path/,
  );

  // Every server named literally with its own marker: no drill-wide marker needed.
  const c = parseConfig(
    drill(
      '    servers: [a, b]\n    overrides:\n      a: { boot_marker: { agent: true } }\n      b: { boot_marker: { serial: "OK" }, timeout: 90s }\n',
    ),
    'test.yaml',
    NOW,
  );
  const d = c.drills.d!;
  assert.equal(d.bootMarker, undefined);
  assert.deepEqual(d.overrides.b?.bootMarker, { serial: 'OK' });
  assert.equal(d.overrides.b?.timeoutMs, 90_000);
  assert.equal(d.overrides.a?.timeoutMs, undefined);
});

test('alerts and daemon values', () => {
  rejects(
    `${BASE}alerts:\n  email: { to: [ops], from: h@b.co, smtp: "smtp://m.b.co" }\n`,
    'alerts.email.to',
    /mail address/,
  );
  rejects(
    `${BASE}alerts:\n  email: { to: ops@b.co, from: h@b.co, smtp: "http://m.b.co" }\n`,
    'alerts.email.smtp',
    /smtp or smtps URL/,
  );
  rejects(
    `${BASE}alerts:\n  email: { to: ops@b.co, smtp: "smtp://m.b.co" }\n`,
    'alerts.email.from',
    /^required: expected a mail address/,
  );
  rejects(
    `${BASE}alerts:\n  webhook: { url: "https://h.b.co/x", min_severity: loud }\n`,
    'alerts.webhook.min_severity',
    /"info", "warning", "error", "critical"/,
  );
  rejects(`${BASE}daemon: { listen: "localhost:http" }\n`, 'daemon.listen', /port "http"/);
  rejects(`${BASE}cache: { signature: a/b }\n`, 'cache.signature', /file name without "\/"/);
  rejects(`timezone: Mars/Olympus\n${BASE}`, 'timezone', /IANA time zone/);

  const c = parseConfig(
    `${BASE}alerts:\n  email: { to: ops@b.co, from: h@b.co, smtp: "smtps://m.b.co", min_severity: critical }\ndaemon: { listen: "[::1]:9000" }\n`,
    'test.yaml',
    NOW,
  );
  assert.deepEqual(c.alerts.email?.to, ['ops@b.co'], 'a single address becomes a list');
  assert.equal(c.alerts.email?.minSeverity, 'critical');
  assert.deepEqual(c.daemon.listen, { host: '::1', port: 9000 });
});

test('daemon: TLS proxy addresses and progress stream limits', () => {
  const d = parseConfig(BASE, 'test.yaml', NOW).daemon;
  assert.deepEqual(d.tlsProxy, []);
  assert.deepEqual(d.progressStreams, { total: 64, perClient: 8 });
  for (const bad of ['proxy.example.com', '10.0.0.0/33', '::1/129', '1.2.3.4/8/1', '[]']) {
    rejects(
      `${BASE}daemon: { tls_proxy: ${JSON.stringify(bad)} }\n`,
      'daemon.tls_proxy',
      /TLS reverse proxy/,
    );
  }
  rejects(`${BASE}daemon: { progress_streams: 0 }\n`, 'daemon.progress_streams', /from 1 to 10000/);
  const c = parseConfig(
    `${BASE}daemon:\n  tls_proxy: [loopback, 10.1.2.3, "fd00::/8"]\n  progress_streams: 5\n  progress_streams_per_client: 2\n`,
    'test.yaml',
    NOW,
  );
  assert.deepEqual(c.daemon.tlsProxy, ['loopback', '10.1.2.3', 'fd00::/8']);
  assert.deepEqual(c.daemon.progressStreams, { total: 5, perClient: 2 });
  assert.deepEqual(parseConfig(`${BASE}daemon: { tls_proxy: 127.0.0.1 }\n`, 't.yaml', NOW).daemon.tlsProxy, [
    '127.0.0.1',
  ]);
});

test('definitions: boot directories and per-server allowances at the DR site', () => {
  const c = parseConfig(
    `${BASE}definitions:\n  boot_files: [/srv/kernels/, /var/lib/haven/boot]\n  allow:\n    web01: [filesystem, namespaces]\n`,
    'test.yaml',
    NOW,
  );
  assert.deepEqual(c.definitions.bootFiles, ['/srv/kernels', '/var/lib/haven/boot']);
  assert.deepEqual(c.definitions.allow.web01, ['filesystem', 'namespaces']);
  // A name such as "constructor" finds nothing rather than Object's own property.
  assert.equal(c.definitions.allow.constructor, undefined);
  assert.deepEqual(defaultConfig().definitions.bootFiles, []);
  assert.deepEqual(Object.keys(defaultConfig().definitions.allow), []);
  rejects(`${BASE}definitions:\n  boot_files: [kernels]\n`, 'definitions.boot_files', /absolute directory/);
  rejects(
    `${BASE}definitions:\n  allow:\n    web01: [everything]\n`,
    'definitions.allow.web01[0]',
    /"all", "disks"/,
  );
  rejects(
    `${BASE}definitions:\n  allow:\n    "web*": [hostdev]\n`,
    'definitions.allow["web*"]',
    /keyed by server name, not pattern/,
  );
  rejects(`${BASE}definitions:\n  boot_file: [/x]\n`, 'definitions.boot_file', /did you mean boot_files/);
});

test('a file with several problems reports all of them, in file order, with lines', () => {
  const text = `targets:
  dr1:
    url: relative
    bandwidth: fast
jobs:
  a:
    servers: []
    target: dr1
    targets: [dr1]
  b:
    servers: [x]
    target: nope
    schedule: "99 * * * *"
    rpo: later
extra: true
`;
  const problems = problemsOf(text);
  assert.deepEqual(
    problems.map((p) => [p.line, p.path]),
    [
      [3, 'targets.dr1.url'],
      [4, 'targets.dr1.bandwidth'],
      [7, 'jobs.a.servers'],
      [9, 'jobs.a.targets'],
      [12, 'jobs.b.target'],
      [13, 'jobs.b.schedule'],
      [14, 'jobs.b.rpo'],
      [15, 'extra'],
    ],
  );
  try {
    parseConfig(text, '/etc/haven/haven.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /^invalid configuration \/etc\/haven\/haven.yaml: 8 problems\n/);
    assert.match(e.message, /\n {2}\/etc\/haven\/haven.yaml:13:15: jobs.b.schedule: invalid cron expression/);
    assert.deepEqual((e.details as { problems: unknown[] }).problems.length, 8);
  }
});

test('YAML syntax errors give line and column', () => {
  const problems = problemsOf('targets:\n  dr1:\n    url: [/srv\n    copies: 2\n');
  assert.ok(problems.length >= 1);
  assert.match(problems[0]!.message, /^YAML syntax error: /);
  assert.equal(typeof problems[0]!.line, 'number');
  assert.equal(typeof problems[0]!.column, 'number');

  const dup = problemsOf('jobs: {}\njobs: {}\n');
  assert.equal(dup[0]!.line, 2);
  assert.match(dup[0]!.message, /unique/);
});

test('YAML anchors and merge keys share settings between jobs', () => {
  const c = parseConfig(
    `${BASE}  other:\n    <<: &common { servers: [db01], target: dr1, retries: 5 }\n    schedule: "0 2 * * *"\n`,
    'test.yaml',
    NOW,
  );
  assert.equal(c.jobs.other?.retries, 5);
  assert.deepEqual(c.jobs.other?.servers, ['db01']);
});

test('warnings: an RPO the schedule cannot meet, an override that never applies', () => {
  const c = parseConfig(
    `${BASE}    rpo: 12h\ndrills:\n  d:\n    store: /s\n    servers: [a]\n    boot_marker: { agent: true }\n    overrides: { b: { timeout: 1m } }\n`,
    'test.yaml',
    NOW,
  );
  assert.deepEqual(
    c.warnings.map((w) => w.path),
    ['jobs.nightly.rpo', 'drills.d.overrides.b'],
  );
  assert.match(c.warnings[0]!.message, /12h0m|12h/);
  assert.match(c.warnings[0]!.message, /1d/);
  assert.equal(c.warnings[0]!.line, 10);
  const fine = parseConfig(`${BASE}    rpo: 26h\n`, 'test.yaml', NOW);
  assert.deepEqual(fine.warnings, []);
});

test('warnings: a daemon other hosts reach over plain HTTP, unless a TLS proxy is declared', () => {
  for (const listen of ['0.0.0.0:8470', '192.0.2.10:8470', '"[::]:8470"']) {
    const c = parseConfig(`${BASE}daemon:\n  listen: ${listen}\n`, 'test.yaml', NOW);
    assert.deepEqual(
      c.warnings.map((w) => w.path),
      ['daemon.listen'],
      listen,
    );
    assert.match(c.warnings[0]!.message, /other hosts can reach, over plain HTTP/);
  }
  for (const daemon of [
    'listen: 127.0.0.2:8470',
    'listen: "[::1]:8470"',
    'listen: localhost:8470',
    // A name is judged by doctor (resolved) and at start (the bound address), not here.
    'listen: dr-host.example.com:8470',
    'listen: 0.0.0.0:8470\n  tls_proxy: 10.0.0.5',
  ]) {
    assert.deepEqual(parseConfig(`${BASE}daemon:\n  ${daemon}\n`, 'test.yaml', NOW).warnings, [], daemon);
  }
});

test('loadConfig: missing file, unreadable size, and the optional file', (t) => {
  const dir = tmpDir(t);
  const missing = join(dir, 'nope.yaml');
  assert.throws(
    () => loadConfig(missing),
    (e: unknown) =>
      e instanceof ConfigNotFoundError && e.code === 'CONFIG_NOT_FOUND' && e.message.includes(missing),
  );
  const c: HavenConfig = loadConfigIfPresent(missing, { required: false });
  assert.equal(c.file, null);
  assert.throws(() => loadConfigIfPresent(missing, { required: true }), ConfigNotFoundError);

  const big = join(dir, 'big.yaml');
  writeFileSync(big, Buffer.alloc(MAX_CONFIG_BYTES + 1, 0x20));
  assert.throws(
    () => loadConfig(big),
    (e: unknown) => e instanceof ConfigError && /more than the/.test(e.message),
  );

  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'jobs: 5\n');
  assert.throws(
    () => loadConfigIfPresent(bad, { required: false }),
    (e: unknown) =>
      e instanceof ConfigError && e.message.includes(`${bad}:1:7: jobs: expected a mapping from job names`),
  );
  assert.throws(
    () => loadConfig(dir),
    (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'IO_ERROR',
  );
});

test('nextRun follows the schedule in the configured time zone', () => {
  const after = new Date('2026-03-10T12:00:00Z');
  assert.equal(nextRun('30 1 * * *', 'UTC', after)?.toISOString(), '2026-03-11T01:30:00.000Z');
  // Berlin is UTC+1 in March before the DST switch.
  assert.equal(nextRun('30 1 * * *', 'Europe/Berlin', after)?.toISOString(), '2026-03-11T00:30:00.000Z');
  assert.equal(nextRun('0 4 * * 0', 'UTC', after)?.toISOString(), '2026-03-15T04:00:00.000Z');
});

test('key paths are printed as operators write them', () => {
  assert.equal(formatPath(['jobs', 'nightly', 'schedule']), 'jobs.nightly.schedule');
  assert.equal(formatPath(['jobs', 'nightly', 'targets', 1]), 'jobs.nightly.targets[1]');
  assert.equal(formatPath(['targets', 'dr 1', 'url']), 'targets["dr 1"].url');
  assert.equal(formatPath(['jobs', 'a.b']), 'jobs["a.b"]');
  assert.equal(formatPath([]), '');
});

test('retention: defaults, values, off, and bad values', () => {
  const DAY = 86_400_000;
  const defaults = {
    logs: { maxAgeMs: 30 * DAY, maxBytes: 1024 ** 3, maxFiles: 10_000 },
    runsMs: 90 * DAY,
    eventsMs: 90 * DAY,
    unusedCheckpointsMs: 30 * DAY,
  };
  assert.deepEqual(parseConfig(BASE, 'test.yaml', NOW).retention, defaults);
  assert.deepEqual(defaultConfig().retention, defaults);
  assert.deepEqual(parseConfig(`${BASE}retention:\n`, 'test.yaml', NOW).retention, defaults);
  assert.deepEqual(parseConfig(`${BASE}retention: { logs: }\n`, 'test.yaml', NOW).retention, defaults);
  const c = parseConfig(
    `${BASE}retention:\n  logs: { max_age: 7d, max_size: off, max_files: 500 }\n  runs: 1w\n  events: off\n  unused_checkpoints: 12h\n`,
    'test.yaml',
    NOW,
  );
  assert.deepEqual(c.retention, {
    logs: { maxAgeMs: 7 * DAY, maxBytes: null, maxFiles: 500 },
    runsMs: 7 * DAY,
    eventsMs: null,
    unusedCheckpointsMs: DAY / 2,
  });
  rejects(`${BASE}retention: { runs: 10m }\n`, 'retention.runs', /at least 3600s/);
  rejects(`${BASE}retention: { logs: { max_size: lots } }\n`, 'retention.logs.max_size', /a size such as/);
  rejects(`${BASE}retention: { logs: { max_files: 3 } }\n`, 'retention.logs.max_files', /from 10 to/);
  rejects(`${BASE}retention: { keep: 1d }\n`, 'retention.keep', /^unknown key/);
});

test('integrity: how long the check of a generation stays good before a commit reads it again', () => {
  assert.deepEqual(parseConfig(BASE, 'test.yaml', NOW).integrity, { recheckMs: 86_400_000 });
  assert.deepEqual(defaultConfig().integrity, { recheckMs: 86_400_000 });
  assert.equal(parseConfig(`${BASE}integrity: { recheck: 0 }\n`, 'test.yaml', NOW).integrity.recheckMs, 0);
  assert.equal(
    parseConfig(`${BASE}integrity: { recheck: 6h }\n`, 'test.yaml', NOW).integrity.recheckMs,
    6 * 3_600_000,
  );
  rejects(`${BASE}integrity: { recheck: soon }\n`, 'integrity.recheck', /a duration such as/);
  rejects(`${BASE}integrity: { scrub: 1d }\n`, 'integrity.scrub', /^unknown key/);
});

test('scrubs: a store on this host verified on a schedule (issue 13.5)', () => {
  const c = parseConfig(
    'scrubs:\n  weekly:\n    store: /srv/haven\n    schedule: "0 3 * * 0"\n',
    'test.yaml',
    NOW,
  );
  assert.deepEqual({ ...c.scrubs.weekly }, { name: 'weekly', store: '/srv/haven', schedule: '0 3 * * 0' });
  rejects('scrubs:\n  weekly:\n    store: /srv/haven\n', 'scrubs.weekly.schedule', /required/);
  rejects(
    'scrubs:\n  weekly:\n    store: srv/haven\n    schedule: "0 3 * * 0"\n',
    'scrubs.weekly.store',
    /absolute/,
  );
  rejects(
    'scrubs:\n  weekly:\n    store: /srv/haven\n    schedule: "every sunday"\n',
    'scrubs.weekly.schedule',
    /cron/,
  );
});
