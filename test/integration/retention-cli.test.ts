/**
 * Issue 13 item 15, retention without the daemon: old run logs, runs and events (timestamps set
 * in the past) are deleted by `haven prune` and, at most hourly, after any command that did work,
 * here a `haven receive --stdio` that had nothing to receive (the DR side's only command). Recent
 * records stay; a dry run changes nothing; `retention: … off` keeps everything.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { catalogPath, openCatalog } from '../../src/catalog/catalog.ts';
import type { MaintenanceReport } from '../../src/jobs/index.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { scratchDir, withCatalog, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-retcli';
const DAY = 86_400_000;
const dead = spawnSync(process.execPath, ['-e', '']).pid;

/** A run log as Haven names it, last written `days` ago. */
async function oldLog(dir: string, what: string, days: number): Promise<string> {
  const at = new Date(Date.now() - days * DAY);
  const path = join(dir, `${what}-${at.toISOString().replace(/[:.]/g, '-')}-${dead}.log`);
  await writeFile(path, `${what}\n`);
  await utimes(path, at, at);
  return path;
}

/** An old finished run and an old event in the catalog, plus recent ones; returns their ids. */
function seedHistory(stateDir: string) {
  const c = openCatalog(catalogPath(stateDir));
  try {
    const at = new Date(Date.now() - 120 * DAY);
    const oldRun = c.runs.start({ kind: 'verify', trigger: 'manual', at });
    c.runs.finish(oldRun.id, { status: 'ok', at });
    const newRun = c.runs.start({ kind: 'verify', trigger: 'manual' });
    c.runs.finish(newRun.id, { status: 'ok' });
    const oldEvent = c.events.append({ type: 'run.started', severity: 'info', message: 'old', at });
    const newEvent = c.events.append({ type: 'run.started', severity: 'info', message: 'new' });
    return { oldRun: oldRun.id, newRun: newRun.id, oldEvent: oldEvent.id, newEvent: newEvent.id };
  } finally {
    c.close();
  }
}

test('retention after a command that did work, at most hourly, and with haven prune', async (t) => {
  const { dir } = await scratchDir(t, PREFIX);
  const h = await havenEnv(dir);
  const logDir = h.env.HAVEN_LOG_DIR!;
  await mkdir(logDir, { recursive: true });
  const ids = seedHistory(h.stateDir);
  const stale = await oldLog(logDir, 'receive', 45);
  const recent = await oldLog(logDir, 'receive', 1);

  const dry = await havenJson<MaintenanceReport>(h, ['prune', '--dry-run']);
  assert.deepEqual(
    dry.logs?.deleted.map((f) => f.reason),
    ['age'],
  );
  assert.deepEqual(dry.history, { runs: 1, events: 1 });
  assert.ok(existsSync(stale), 'a dry run deletes nothing');
  withCatalog(h.stateDir, (c) => assert.ok(c.runs.get(ids.oldRun)));

  // The DR side's command: a receiver with nothing to receive still wrote its log.
  const receive = await runHaven(h, ['receive', '--stdio', '--store', join(dir, 'store')]);
  assert.equal(receive.code, 0, receive.stderr);
  assert.equal(existsSync(stale), false, 'the 45-day-old log went after the run');
  assert.ok(existsSync(recent));
  withCatalog(h.stateDir, (c) => {
    assert.equal(c.runs.get(ids.oldRun), undefined);
    assert.equal(c.events.get(ids.oldEvent), undefined);
    assert.ok(c.runs.get(ids.newRun));
    assert.ok(c.events.get(ids.newEvent));
  });

  // Within the hour another run does not look again; haven prune does.
  const second = await oldLog(logDir, 'protect-web01', 45);
  assert.equal((await runHaven(h, ['receive', '--stdio', '--store', join(dir, 'store')])).code, 0);
  assert.ok(existsSync(second), 'not due again within the hour');
  const pruned = await havenJson<MaintenanceReport>(h, ['prune']);
  assert.deepEqual(
    pruned.logs?.deleted.map((f) => f.file),
    [second.slice(logDir.length + 1)],
  );
  assert.equal(existsSync(second), false);
});

test('retention off keeps everything', async (t) => {
  const { dir } = await scratchDir(t, PREFIX);
  const config = await writeConfig(
    dir,
    'retention:\n  logs: { max_age: off, max_size: off, max_files: off }\n  runs: off\n  events: off\n',
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  await mkdir(h.env.HAVEN_LOG_DIR!, { recursive: true });
  const ids = seedHistory(h.stateDir);
  const stale = await oldLog(h.env.HAVEN_LOG_DIR!, 'receive', 400);
  const r = await havenJson<MaintenanceReport>(h, ['prune', '--no-checkpoints']);
  assert.deepEqual(r.logs?.deleted, []);
  assert.deepEqual(r.history, { runs: 0, events: 0 });
  assert.equal(r.checkpoints, null);
  assert.ok(existsSync(stale));
  withCatalog(h.stateDir, (c) => assert.ok(c.runs.get(ids.oldRun) && c.events.get(ids.oldEvent)));
});
