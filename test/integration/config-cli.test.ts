/**
 * `haven config check` as an operator runs it: the real command in a child process, with
 * configuration files on disk, checking output and exit codes (docs/exit-codes.md).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nextRun } from '../../src/core/config.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HAVEN = join(ROOT, 'bin', 'haven.mjs');

function tmpDir(t: TestContext): string {
  const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, 'haven-t-cat-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function haven(args: string[], env: Record<string, string> = {}) {
  const dir = mkdtempSync(
    join(process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test', 'haven-t-cat-cli-state-'),
  );
  try {
    const { HAVEN_CONFIG: _ignored, ...inherited } = process.env;
    const r = spawnSync(process.execPath, [HAVEN, ...args], {
      encoding: 'utf8',
      env: {
        ...inherited,
        HAVEN_STATE_DIR: join(dir, 'state'),
        HAVEN_LOG_DIR: join(dir, 'log'),
        HAVEN_RUN_DIR: join(dir, 'run'),
        ...env,
      },
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('config check: a valid file gives a summary with next run times, exit 0', (t) => {
  const file = join(tmpDir(t), 'haven.yaml');
  copyFileSync(join(ROOT, 'examples', 'haven.yaml'), file);
  const r = haven(['--config', file, 'config', 'check']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /valid \(3 targets, 3 jobs, 1 drill\); schedules in Europe\/Berlin/);
  // Times in the one style of every listing, the zone named in the column header.
  assert.match(r.stdout, /next run \(Europe\/Berlin\)/);
  assert.match(r.stdout, /nightly .*web01 db01 app\* .*dr1 .*30 1 \* \* \* .*\d{4}-\d\d-\d\d 01:30:00 \(in /);
  assert.match(r.stdout, /ssh:\/\/root@dr1\.example\.com\/srv\/haven .*50\.0 MiB\/s/);
  assert.match(r.stdout, /weekly .*\/srv\/haven .*serial "login:" \(\+1 overrides\)/);
  assert.match(r.stdout, /Daemon: listens on 127\.0\.0\.1:8470/);
});

test('config check --json: the checked configuration with next runs from the schedules', (t) => {
  const file = join(tmpDir(t), 'haven.yaml');
  copyFileSync(join(ROOT, 'examples', 'haven.yaml'), file);
  const before = new Date();
  const r = haven(['config', 'check', '--json'], { HAVEN_CONFIG: file });
  const after = new Date();
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    valid: boolean;
    file: string;
    jobs: { name: string; nextRun: string; rpoMs: number; targets: string[] }[];
    drills: { name: string; nextRun: string; overrides: Record<string, unknown> }[];
    targets: { name: string; bandwidth: number }[];
  };
  assert.equal(out.valid, true);
  assert.equal(out.file, file);
  const nightly = out.jobs.find((j) => j.name === 'nightly')!;
  assert.equal(nightly.rpoMs, 26 * 3_600_000);
  // The command computed "next" at some instant between before and after.
  const expected = [before, after].map((d) => nextRun('30 1 * * *', 'Europe/Berlin', d)?.toISOString());
  assert.ok(expected.includes(nightly.nextRun), `${nightly.nextRun} not in ${expected.join(', ')}`);
  assert.deepEqual(out.jobs.find((j) => j.name === 'offsite')?.targets, ['dr1', 'dr2']);
  assert.ok(out.drills[0]?.overrides.win01);
  assert.equal(out.targets.find((x) => x.name === 'dr1')?.bandwidth, 50 * 1024 ** 2);
});

test('config check: an invalid file lists every problem with file, line and key path, exit 3', (t) => {
  const file = join(tmpDir(t), 'haven.yaml');
  writeFileSync(
    file,
    [
      'targets:',
      '  dr1:',
      '    url: ssh://root@dr1/srv/haven',
      '    bandwidth: 5 parsecs',
      'jobs:',
      '  nightly:',
      '    servers: [web01]',
      '    target: dr2',
      '    schedule: "30 25 * * *"',
      '',
    ].join('\n'),
  );
  const r = haven(['--config', file, 'config', 'check']);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /haven: error \[CONFIG_INVALID\]: invalid configuration .*: 3 problems/);
  assert.ok(r.stderr.includes(`${file}:4:16: targets.dr1.bandwidth: expected a rate`), r.stderr);
  assert.ok(
    r.stderr.includes(`${file}:8:13: jobs.nightly.target: unknown target "dr2"; defined targets: dr1`),
  );
  assert.ok(r.stderr.includes(`${file}:9:15: jobs.nightly.schedule: invalid cron expression "30 25 * * *"`));

  const j = haven(['--config', file, 'config', 'check', '--json']);
  assert.equal(j.code, 3);
  const err = JSON.parse(j.stdout) as {
    error: { code: string; details: { problems: { path: string; line: number }[] } };
  };
  assert.equal(err.error.code, 'CONFIG_INVALID');
  assert.deepEqual(
    err.error.details.problems.map((p) => [p.path, p.line]),
    [
      ['targets.dr1.bandwidth', 4],
      ['jobs.nightly.target', 8],
      ['jobs.nightly.schedule', 9],
    ],
  );
});

test('config check: a missing file is CONFIG_NOT_FOUND, exit 4', (t) => {
  const file = join(tmpDir(t), 'nope.yaml');
  const r = haven(['--config', file, 'config', 'check']);
  assert.equal(r.code, 4);
  assert.match(r.stderr, /\[CONFIG_NOT_FOUND\]: configuration file .*nope\.yaml does not exist/);
});

test('config check: warnings are printed but the file is valid', (t) => {
  const file = join(tmpDir(t), 'haven.yaml');
  writeFileSync(
    file,
    'targets:\n  t: { url: /srv/haven }\njobs:\n  j:\n    servers: ["*"]\n    target: t\n    schedule: "0 3 * * *"\n    rpo: 6h\n',
  );
  const r = haven(['--config', file, 'config', 'check']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /1 warning:\n.*:8:10: jobs\.j\.rpo: 6h is not longer than the gap of up to 1d/);
});
