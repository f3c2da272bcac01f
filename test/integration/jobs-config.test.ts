/**
 * Issue 4, last must-show: invalid configurations are rejected with the exact key path named,
 * by `haven config check` and by every command that reads the configuration (`haven job run`
 * runs nothing). One problem per file, so each message is checked on its own, then all at once.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { havenEnv, runHaven } from '../helpers/haven.ts';
import { scratchDir, writeConfig } from './jobs-helpers.ts';

const BASE = {
  target: 'dr:\n    url: /srv/haven\n    copies: 2\n    bandwidth: 50MiB/s',
  job: 'servers: [web01, "app*"]\n    target: dr\n    schedule: "30 1 * * *"\n    rpo: 26h\n    buffer: 64MiB',
};

function file(o: { target?: string; job?: string; extra?: string } = {}): string {
  return `targets:\n  ${o.target ?? BASE.target}\njobs:\n  nightly:\n    ${o.job ?? BASE.job}\n${o.extra ?? ''}`;
}

const CASES: Array<{ name: string; text: string; path: string; message: RegExp }> = [
  {
    name: 'wrong type',
    text: file({ job: BASE.job.replace('rpo: 26h', 'rpo: 26h\n    parallel: two') }),
    path: 'jobs.nightly.parallel',
    message: /expected a whole number from 1 to 64, got "two"/,
  },
  {
    name: 'wrong type (a list expected)',
    text: file({ job: BASE.job.replace('servers: [web01, "app*"]', 'servers: web01') }),
    path: 'jobs.nightly.servers',
    message: /expected a list of server names or glob patterns/,
  },
  {
    name: 'unknown key',
    text: file({ job: BASE.job.replace('schedule:', 'schedul:') }),
    path: 'jobs.nightly.schedul',
    message: /unknown key \(did you mean schedule\?\)/,
  },
  {
    name: 'bad cron',
    text: file({ job: BASE.job.replace('"30 1 * * *"', '"61 * * * *"') }),
    path: 'jobs.nightly.schedule',
    message: /invalid cron expression "61 \* \* \* \*"/,
  },
  {
    name: 'bad size',
    text: file({ job: BASE.job.replace('buffer: 64MiB', 'buffer: 64 parsecs') }),
    path: 'jobs.nightly.buffer',
    message: /expected a size/,
  },
  {
    name: 'bad rate',
    text: file({ target: BASE.target.replace('50MiB/s', 'very fast') }),
    path: 'targets.dr.bandwidth',
    message: /expected a rate/,
  },
  {
    name: 'unknown target',
    text: file({ job: BASE.job.replace('target: dr', 'target: dr9') }),
    path: 'jobs.nightly.target',
    message: /unknown target "dr9"; defined targets: dr/,
  },
  {
    name: 'unknown target in a list',
    text: file({ job: BASE.job.replace('target: dr', 'targets: [dr, dr9]') }),
    path: 'jobs.nightly.targets[1]',
    message: /unknown target "dr9"/,
  },
  {
    name: 'bad staging directory of a target',
    text: file({ target: `${BASE.target}\n    staging: relative/dir` }),
    path: 'targets.dr.staging',
    message: /auto \(the target’s largest cache drive\) or an absolute directory/,
  },
  {
    name: 'bad alert threshold',
    text: file({
      extra:
        'alerts:\n  email: { to: [ops@example.com], from: haven@example.com, smtp: "smtp://mail:25", min_severity: loud }\n',
    }),
    path: 'alerts.email.min_severity',
    message: /expected one of "info", "warning", "error", "critical", got "loud"/,
  },
];

test('a valid file passes', async (t) => {
  const { dir } = await scratchDir(t, 'haven-t-jobs-config');
  const h = await havenEnv(dir, { HAVEN_CONFIG: await writeConfig(dir, file()) });
  const r = await runHaven(h, ['config', 'check']);
  assert.equal(r.code, 0, r.stderr);
  const list = await runHaven(h, ['job', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  const jobs = JSON.parse(list.stdout) as Array<{ name: string; nextRun: string; targets: string[] }>;
  assert.equal(jobs[0]?.name, 'nightly');
  assert.deepEqual(jobs[0]?.targets, ['dr']);
  assert.ok(new Date(jobs[0]!.nextRun).getTime() > Date.now(), 'the next run time is shown');
});

for (const c of CASES) {
  test(`invalid: ${c.name} is rejected at ${c.path}`, async (t) => {
    const { dir } = await scratchDir(t, 'haven-t-jobs-config');
    const path = await writeConfig(dir, c.text);
    const h = await havenEnv(dir, { HAVEN_CONFIG: path });
    const r = await runHaven(h, ['config', 'check', '--json']);
    assert.equal(r.code, 3, `exit 3 (config): ${r.stderr}`);
    const err = JSON.parse(r.stdout) as {
      error: { code: string; details: { file: string; problems: Array<{ path: string; message: string }> } };
    };
    assert.equal(err.error.code, 'CONFIG_INVALID');
    assert.equal(err.error.details.file, path);
    assert.deepEqual(
      err.error.details.problems.map((p) => p.path),
      [c.path],
      JSON.stringify(err.error.details.problems),
    );
    assert.match(err.error.details.problems[0]!.message, c.message);
    assert.ok(r.stderr.includes(`: ${c.path}: `), `stderr names the key path:\n${r.stderr}`);

    // A job run refuses to start: nothing recorded, nothing copied.
    const run = await runHaven(h, ['job', 'run', 'nightly']);
    assert.equal(run.code, 3);
    assert.match(run.stderr, /\[CONFIG_INVALID\]/);
    assert.ok(run.stderr.includes(c.path));
    assert.equal(existsSync(join(h.stateDir, 'catalog.sqlite')), false, 'no run was recorded');
  });
}

test('all problems of a file at once, in file order', async (t) => {
  const { dir } = await scratchDir(t, 'haven-t-jobs-config');
  const text = file({
    target: BASE.target.replace('50MiB/s', 'fast'),
    job: BASE.job
      .replace('target: dr', 'target: nowhere')
      .replace('"30 1 * * *"', '"* * *"')
      .replace('buffer: 64MiB', 'buffer: huge\n    colour: blue'),
  });
  const h = await havenEnv(dir, { HAVEN_CONFIG: await writeConfig(dir, text) });
  const r = await runHaven(h, ['config', 'check', '--json']);
  assert.equal(r.code, 3);
  const paths = (
    JSON.parse(r.stdout) as { error: { details: { problems: Array<{ path: string }> } } }
  ).error.details.problems.map((p) => p.path);
  assert.deepEqual(paths, [
    'targets.dr.bandwidth',
    'jobs.nightly.target',
    'jobs.nightly.schedule',
    'jobs.nightly.buffer',
    'jobs.nightly.colour',
  ]);
});
