/**
 * Issue 5, "drills can be scheduled like jobs", with the real `haven serve` in a child process:
 * a drill configured with a cron schedule fires while the daemon runs, boots the newest
 * generation in isolation until the guest's own pattern check passes, and is recorded as a run
 * (`haven runs --kind drill`) and in the store's manifest; nothing it created is left behind.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Run, ServerResult } from '../../src/catalog/catalog.ts';
import { havenEnv, havenJson } from '../helpers/haven.ts';
import { freePort, startDaemon, waitFor, writeConfig } from './jobs-helpers.ts';
import { domainsLike, guestDefinitions, manifest, protect, site } from './recovery-helpers.ts';

type RunView = Run & { servers: ServerResult[] };

test('haven serve runs a scheduled drill; it passes, is recorded, and leaves nothing behind', async (t) => {
  const s = await site(t, 'sched-drill');
  const server = s.guest.name;
  await s.guest.writePattern('vda', 17, 24);
  await s.guest.setWorkload({ name: 'pattern-verify', seed: 17, count: 24 });
  await protect(s, 2);

  const port = await freePort();
  const config = await writeConfig(
    s.dir,
    `drills:
  every-minute:
    store: ${s.store}
    servers: ["${server}"]
    schedule: "* * * * *"
    boot_marker: { serial: "HAVEN pattern-verify OK" }
    timeout: 3m
daemon:
  listen: 127.0.0.1:${port}
${guestDefinitions(s.guest)}`,
  );
  const h = await havenEnv(s.dir, { HAVEN_CONFIG: config });
  const daemon = startDaemon(t, h.env);

  const run = await waitFor(
    'a scheduled drill to finish',
    async () =>
      (await havenJson<RunView[]>(h, ['runs', '--kind', 'drill'])).find(
        (r) => r.trigger === 'schedule' && r.status !== 'running',
      ),
    240_000,
    2_000,
  );
  assert.equal(run.status, 'ok', daemon.stderr());
  assert.equal(run.job, 'every-minute');
  assert.deepEqual(
    run.servers.map((x) => [x.server, x.status]),
    [[server, 'ok']],
  );

  const tests = (await manifest(s)).generations[0]!.tests.filter((x) => x.kind === 'drill');
  assert.ok(tests.length >= 1, 'the store records the drill');
  assert.equal(tests[0]!.result, 'pass');

  // Stop the daemon before looking for leftovers: a second fire may be under way.
  await daemon.stop(60_000);
  assert.deepEqual(await domainsLike(`${server}-drill`), [], 'a drill domain was left');
  const runDir = h.env.HAVEN_RUN_DIR!;
  assert.deepEqual(await readdir(join(runDir, 'drills')).catch(() => []), [], 'drill files were left');
});
