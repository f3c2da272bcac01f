/**
 * Issue 5, drill must-show, against real libvirt and QEMU: a drill passes for a good generation
 * and fails, with an alert, for one whose image was deliberately damaged — caught by the digests
 * when asked to check them (--verify), and by the guest's own verification of its pattern when
 * not. The store's manifest records every result; nothing a drill creates is left behind. The
 * alert goes through the configured channel (a webhook served by this test), once per problem.
 */
import assert from 'node:assert/strict';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { openCatalog } from '../../src/catalog/catalog.ts';
import type { DrillReport } from '../../src/recovery/index.ts';
import { PATTERN_BLOCK_SIZE, patternBlocks } from '../fixtures/guest/pattern.ts';
import { havenEnv } from '../helpers/haven.ts';
import {
  domainsLike,
  guestDefinitions,
  manifest,
  protect,
  runHaven,
  site,
  snapshot,
} from './recovery-helpers.ts';

test('a good generation passes its drill, a damaged one fails with an alert; all recorded, nothing left', async (t) => {
  const s = await site(t, 'drill');
  const server = s.guest.name;
  const disk = s.guest.disks[0]!;
  await s.guest.writePattern('vda', 31, 40);
  await s.guest.setWorkload({ name: 'pattern-verify', seed: 31, count: 40 });
  await protect(s, 2);

  // Alerts go to a webhook: a real HTTP server here that keeps what it is sent.
  const alerts: Array<{ event: { type: string; server: string; severity: string } }> = [];
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString('utf8');
    });
    req.on('end', () => {
      alerts.push(JSON.parse(body));
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => hook.close(() => r())));
  const port = (hook.address() as AddressInfo).port;

  // The drill as configured (what the daemon schedules through runDrill).
  const config = join(s.dir, 'haven.yaml');
  await writeFile(
    config,
    `drills:\n  weekly:\n    store: ${s.store}\n    servers: ["haven-t-rec-*"]\n    boot_marker: { serial: "HAVEN pattern-verify OK" }\n    timeout: 3m\n` +
      `alerts:\n  webhook:\n    url: http://127.0.0.1:${port}/haven\n    min_severity: error\n` +
      guestDefinitions(s.guest),
  );
  const h = await havenEnv(s.dir, { HAVEN_CONFIG: config });
  const runDir = h.env.HAVEN_RUN_DIR!;
  const leftovers = async () => {
    assert.deepEqual(await domainsLike(`${server}-drill`), [], 'a drill domain was left');
    assert.deepEqual(await readdir(join(runDir, 'drills')).catch(() => []), [], 'drill files were left');
  };
  // A drill records its result in the manifest, which the store keeps twice (docs/store-format.md).
  const forgetManifest = (files: Map<string, string>) => {
    for (const f of ['manifest.json', 'manifest.copy.json'])
      files.delete(join('.haven', 'servers', server, f));
  };
  const before = await snapshot(s.store);
  const unchangedButManifest = async () => {
    const now = await snapshot(s.store);
    for (const m of [before, now]) forgetManifest(m);
    assert.deepEqual(now, before, 'a drill changed the store beyond its manifest');
  };

  const good = await runHaven(h, ['drill', '--drill', 'weekly', '--json']);
  assert.equal(good.code, 0, good.stderr);
  const goodReport = JSON.parse(good.stdout) as DrillReport;
  // The pattern selects every server of the store: this test's one.
  assert.deepEqual(
    goodReport.results.map((r) => [r.server, r.result, r.recorded]),
    [[server, 'pass', true]],
  );
  const passSeconds = goodReport.results[0]!.seconds;
  assert.ok(passSeconds > 0);
  t.diagnostic(`drill of a good generation: boot marker after ${passSeconds} s (the measured RTO)`);
  await leftovers();
  await unchangedButManifest();

  // Damage one block the guest's pattern covers, in the generation's image.
  const block = patternBlocks(31, 40, disk.sizeBytes / PATTERN_BLOCK_SIZE)[7]!;
  const image = join(s.store, `${server}_${disk.storeName}_1.raw`);
  const fh = await open(image, 'r+');
  await fh.write(Buffer.from('damaged by the test'), 0, 19, block * PATTERN_BLOCK_SIZE + 1000);
  await fh.close();
  const damagedBefore = await snapshot(s.store);

  // With --verify the digests catch it before anything boots.
  const v = await runHaven(h, ['drill', server, '--store', s.store, '--verify', '--json']);
  assert.equal(v.code, 12, v.stderr);
  const vr = (JSON.parse(v.stdout) as DrillReport).results[0]!;
  assert.equal(vr.result, 'fail');
  assert.equal(vr.error?.code, 'RECOVERY_GENERATION_DAMAGED');
  assert.equal(vr.recorded, true);
  await leftovers();

  // Without it the structure is fine and the copy boots, but the guest finds the damage itself.
  const g = await runHaven(h, ['drill', server, '--store', s.store, '--timeout', '45s', '--json']);
  assert.equal(g.code, 12, g.stderr);
  const gr = (JSON.parse(g.stdout) as DrillReport).results[0]!;
  assert.equal(gr.result, 'fail');
  assert.equal(gr.error?.code, 'DRILL_NO_BOOT_MARKER');
  assert.match(
    gr.consoleTail ?? '',
    new RegExp(`HAVEN pattern-verify BAD disk=vda seed=31 count=40 bad=1 blocks=${block}`),
  );
  await leftovers();
  const after = await snapshot(s.store);
  for (const m of [damagedBefore, after]) forgetManifest(m);
  // The check that found the damage marked its chunk to be sent again from the source by the next
  // run (issue 13.5, store/common/resend.ts): the one change besides the manifest.
  const resend = join('.haven', 'servers', server, 'resend.json');
  const marks = JSON.parse(await readFile(join(s.store, resend), 'utf8')) as {
    disks: Record<string, [number, number][]>;
  };
  const chunk = Math.floor((block * PATTERN_BLOCK_SIZE + 1000) / 65536);
  assert.ok(
    marks.disks[disk.storeName]?.some(([from, to]) => from <= chunk && chunk < to),
    `the damaged chunk ${chunk} is marked: ${JSON.stringify(marks)}`,
  );
  after.delete(resend);
  // …and forgot when that disk was last checked, so the next commit building on it reads it
  // whole (store/common/checked.ts).
  const checked = [...damagedBefore.keys()].filter((f) => f.endsWith(`${disk.storeName}.checked`));
  assert.equal(checked.length, 1, 'the generation had a check record');
  assert.equal(after.has(checked[0]!), false, 'the damaged disk lost its check record');
  damagedBefore.delete(checked[0]!);
  assert.deepEqual(after, damagedBefore, 'a failed drill changed the store beyond its manifest');

  // The manifest records all three, in order.
  const tests = (await manifest(s)).generations[0]!.tests.filter((x) => x.kind === 'drill');
  assert.deepEqual(
    tests.map((x) => x.result),
    ['pass', 'fail', 'fail'],
  );
  assert.match(tests[1]!.detail ?? '', /damaged/);
  assert.match(tests[2]!.detail ?? '', /HAVEN pattern-verify OK/);
  assert.ok(tests.every((x) => x.seconds >= 0));

  // The alert: failures are error events with an open problem; the pass before was info.
  const catalog = openCatalog(join(h.stateDir, 'catalog.sqlite'), { readOnly: true });
  try {
    const events = catalog.events.list({ server }).reverse();
    assert.deepEqual(
      events.map((e) => [e.type, e.severity]),
      [
        ['drill.passed', 'info'],
        ['drill.failed', 'error'],
        ['drill.failed', 'error'],
      ],
    );
    const key = events[1]!.dedupKey!;
    const problem = catalog.events.openProblem(key);
    assert.equal(problem?.severity, 'error');
    assert.equal(problem?.occurrences, 2);
    // Alerted once for the problem, not once per failure.
    assert.deepEqual(
      alerts.map((a) => [a.event.type, a.event.server, a.event.severity]),
      [['drill.failed', server, 'error']],
    );
    const runs = catalog.runs.list({ kind: 'drill' });
    assert.deepEqual(runs.map((r) => r.status).sort(), ['failed', 'failed', 'ok']);
  } finally {
    catalog.close();
  }
});
