/**
 * Issue 13, items 13 and 14, end to end through the real `haven`:
 *
 * - A mistyped target name is not a store: `--to nosuchtarget` fails as TARGET_NOT_FOUND (exit 4,
 *   the configured targets in its hint) and creates nothing; a relative store path is written
 *   `./name`.
 * - A dry run changes nothing anywhere. Before and after `protect --dry-run` (to a store that does
 *   not exist yet, and to one that does), `job run --dry-run` and `activate --dry-run`, every file
 *   and directory under the test's directory (state and catalog, logs, run directory, stores) is
 *   the same, and so are the domain's libvirt checkpoints.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import type { ProtectPlan } from '../../src/engine/index.ts';
import type { JobRunResult } from '../../src/jobs/index.ts';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { activeBackup, listCheckpoints } from '../../src/virt/index.ts';
import { createTestGuest, type TestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { startSshd } from '../helpers/sshd.ts';
import { writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-dry';

/** Every file (size and SHA-256) and directory under `root`. */
async function tree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        out.set(`${relative(root, p)}/`, 'dir');
        await walk(p);
      } else if (e.isFile()) {
        const hash = createHash('sha256')
          .update(await readFile(p))
          .digest('hex');
        out.set(relative(root, p), `${(await stat(p)).size}:${hash}`);
      } else out.set(relative(root, p), e.isSocket() ? 'socket' : 'other');
    }
  };
  await walk(root);
  return out;
}

/** What libvirt holds for the guest that a run could change. */
async function libvirtState(guest: TestGuest): Promise<string> {
  const checkpoints = (await listCheckpoints(guest.virsh, guest.name)).map((c) => c.name).sort();
  return JSON.stringify({ checkpoints, backup: await activeBackup(guest.virsh, guest.name) });
}

async function assertUnchanged(
  what: string,
  dir: string,
  guest: TestGuest,
  before: { files: Map<string, string>; libvirt: string },
): Promise<void> {
  const files = await tree(dir);
  const added = [...files.keys()].filter((k) => !before.files.has(k));
  const removed = [...before.files.keys()].filter((k) => !files.has(k));
  const changed = [...files.keys()].filter(
    (k) => before.files.has(k) && before.files.get(k) !== files.get(k),
  );
  assert.deepEqual(
    { added, removed, changed },
    { added: [], removed: [], changed: [] },
    `${what} changed files`,
  );
  assert.equal(await libvirtState(guest), before.libvirt, `${what} changed libvirt`);
}

test('a bare word that names no configured target is refused, and nothing is created', async (t) => {
  const dir = await testDir(t, `${PREFIX}-name`);
  const config = await writeConfig(
    dir,
    'targets:\n  dr1:\n    url: /srv/haven-dr1\n  dr2:\n    url: /srv/haven-dr2\n',
  );
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] });
  for (const h of [await havenEnv(dir, { HAVEN_CONFIG: config }), await havenEnv(dir)]) {
    const before = await tree(dir);
    const r = await runHaven(h, ['protect', guest.name, '--to', 'nosuchtarget'], { cwd: dir });
    assert.equal(r.code, 4, `exit 4 (not-found): ${r.stderr}`);
    assert.match(r.stderr, /\[TARGET_NOT_FOUND\]: no target named "nosuchtarget"/);
    assert.match(
      r.stderr,
      h.env.HAVEN_CONFIG === config ? /Configured targets: dr1, dr2\./ : /No target is configured\./,
    );
    assert.match(r.stderr, /\.\/nosuchtarget/, 'the hint shows how to write a relative path');
    const after = await tree(dir);
    assert.deepEqual(
      [...after.keys()].filter((k) => !before.has(k) && !k.startsWith('log/')),
      [],
      'nothing was created',
    );
  }
  // Written as a path, a new store in the working directory is what the operator asked for.
  const h = await havenEnv(dir);
  const ok = await runHaven(h, ['protect', guest.name, '--to', './newstore', '--json'], { cwd: dir });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await stat(join(dir, 'newstore', 'haven-store.json'))).isFile(), true);
});

test('protect, job run and activate with --dry-run change nothing anywhere', async (t) => {
  const dir = await testDir(t, `${PREFIX}-plan`);
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] });
  const config = await writeConfig(
    dir,
    `targets:\n  dr:\n    url: ${store}\n  fresh:\n    url: ${join(dir, 'fresh')}\njobs:\n  nightly:\n    servers: [${guest.name}]\n    targets: [dr, fresh]\n`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  await guest.writePattern('vda', 1, 8);
  const snap = async () => ({ files: await tree(dir), libvirt: await libvirtState(guest) });

  // Nothing has run: no catalog, no store, no log yet.
  let before = await snap();
  const first = await havenJson<ProtectPlan>(h, ['protect', guest.name, '--to', 'dr', '--dry-run']);
  assert.equal(first.storeId, null, 'the plan says there is no store yet');
  assert.deepEqual(
    first.disks.map((d) => d.mode),
    ['full'],
  );
  const text = await runHaven(h, ['protect', guest.name, '--to', './relative-new', '--dry-run'], {
    cwd: dir,
  });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /nothing changed/);
  await assertUnchanged('protect --dry-run to a new store', dir, guest, before);

  // A store, a catalog and a checkpoint exist.
  await havenJson(h, ['protect', guest.name, '--to', 'dr']);
  await guest.writePattern('vda', 2, 8);
  before = await snap();
  const plan = await havenJson<ProtectPlan>(h, ['protect', guest.name, '--to', 'dr', '--dry-run']);
  assert.ok(plan.storeId, 'the existing store answered');
  assert.equal(plan.newest?.seq, 1);
  assert.deepEqual(
    plan.disks.map((d) => d.mode),
    ['incremental'],
  );
  await assertUnchanged('protect --dry-run to an existing store', dir, guest, before);

  const job = await havenJson<JobRunResult>(h, ['job', 'run', 'nightly', '--dry-run']);
  assert.equal(job.status, 'planned');
  assert.deepEqual(
    job.servers.map((s) => [s.target, s.plan?.storeId === null]),
    [
      ['dr', false],
      ['fresh', true],
    ],
  );
  await assertUnchanged('job run --dry-run', dir, guest, before);

  const activate = await runHaven(h, [
    'activate',
    guest.name,
    '--store',
    store,
    '--name',
    `${guest.name}-dr`,
    '--dry-run',
    '--json',
  ]);
  assert.equal(activate.code, 0, activate.stderr);
  await assertUnchanged('activate --dry-run', dir, guest, before);
});

test('a dry run over ssh to a store that does not exist yet plans a new store and creates nothing', async (t) => {
  const dir = await testDir(t, `${PREFIX}-ssh`);
  await mkdir(join(dir, 'ssh'));
  const sshd = await startSshd(join(dir, 'ssh'), { logDir: join(dir, 'remote-logs') });
  t.after(() => sshd.stop());
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] });
  const h = await havenEnv(dir);
  const before = { files: await tree(dir), libvirt: await libvirtState(guest) };
  const plan = await havenJson<ProtectPlan>(h, [
    'protect',
    guest.name,
    '--to',
    sshd.url(join(dir, 'remote-store')),
    '--remote-command',
    `${process.execPath} ${HAVEN_BIN}`,
    ...sshd.sshOptions.map((o) => `--ssh-option=${o}`),
    '--dry-run',
  ]);
  assert.equal(plan.storeId, null);
  assert.deepEqual(
    plan.disks.map((d) => d.mode),
    ['full'],
  );
  // The ssh server's own files (host keys, known_hosts) are not Haven's doing.
  before.files = new Map([...before.files].filter(([k]) => !k.startsWith('ssh/')));
  const after = await tree(dir);
  const added = [...after.keys()].filter((k) => !before.files.has(k) && !k.startsWith('ssh/'));
  assert.deepEqual(added, [], 'nothing was created, here or at the target');
  assert.equal(await libvirtState(guest), before.libvirt);
});
