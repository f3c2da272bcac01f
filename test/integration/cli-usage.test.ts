/**
 * Issue 20, item 8, through the real `haven` command: commander's usage errors carry a stable
 * `USAGE_*` code and a hint, on stderr and (with --json) as the documented JSON error; the old
 * `--uri` still works with a warning; `restore` no longer needs `--generation`; and `serve` on a
 * busy port says who to look for and how to move (DAEMON_ADDRESS_IN_USE, exit 7).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, runHaven } from '../helpers/haven.ts';

interface JsonError {
  error: { code: string; kind: string; message: string; hint?: string; details?: Record<string, unknown> };
}

test('usage errors: [USAGE_*] with a hint on stderr, the JSON error with --json, exit 2', async (t) => {
  const dir = await testDir(t, 'haven-t-cli-usage');
  const h = await havenEnv(dir);
  const store = join(dir, 'store');

  const plain = await runHaven(h, ['images', '--store', store, '--bogus']);
  assert.equal(plain.code, 2);
  assert.equal(plain.stdout, '');
  assert.match(plain.stderr, /^haven: error \[USAGE_UNKNOWN_OPTION\]: unknown option '--bogus'\n/);
  assert.match(plain.stderr, /\n {2}Run `haven images --help` for the options and examples\.\n/);

  const cases: Array<[string[], string, RegExp]> = [
    [['images', '--store', store, '--bogus'], 'USAGE_UNKNOWN_OPTION', /unknown option '--bogus'/],
    [['activat', '--all'], 'USAGE_UNKNOWN_COMMAND', /unknown command 'activat'/],
    [
      ['restore', '--store', store, '--to', dir],
      'USAGE_MISSING_ARGUMENT',
      /missing required argument 'server'/,
    ],
    [['activate', '--all'], 'USAGE_MISSING_OPTION', /required option '--store <path>' not specified/],
    [['verify', '--store'], 'USAGE_MISSING_VALUE', /option '--store <path>' argument missing/],
    [
      ['restore', 'web01', '--store', store, '--to', dir, '--format', 'vmdk'],
      'USAGE_INVALID_VALUE',
      /argument 'vmdk' is invalid\. Allowed choices are raw, qcow2/,
    ],
    [
      ['activate', '--all', '--store', store, '--generation', 'newest'],
      'USAGE_INVALID_VALUE',
      /expected a generation/,
    ],
    [['drill', '--network-map', 'prod-br'], 'USAGE_INVALID_VALUE', /expected FROM=TO/],
    [['status', 'extra'], 'USAGE_EXCESS_ARGUMENTS', /too many arguments/],
  ];
  for (const [args, code, message] of cases) {
    // --json right after the command: a flag missing its value is the last word.
    const r = await runHaven(h, [args[0]!, '--json', ...args.slice(1)]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    const e = (JSON.parse(r.stdout) as JsonError).error;
    assert.equal(e.code, code, args.join(' '));
    assert.equal(e.kind, 'usage');
    assert.match(e.message, message);
    assert.match(e.hint ?? '', /Run `haven [a-z -]*--help` for the (options and examples|commands)\./);
    assert.ok(r.stderr.startsWith(`haven: error [${code}]: `), r.stderr);
  }
  const near = await runHaven(h, ['activat', '--json']);
  assert.match(
    (JSON.parse(near.stdout) as JsonError).error.hint ?? '',
    /^Did you mean activate\? Run `haven --help`/,
  );
});

test('the old --uri still works, with a warning; --connect is the name', async (t) => {
  const h = await havenEnv(await testDir(t, 'haven-t-cli-uri'));
  const old = await runHaven(h, ['servers', '--uri', 'qemu:///system', '--json']);
  assert.equal(old.code, 0, old.stderr);
  assert.match(old.stderr, /warning: --uri is deprecated .*use --connect/);
  assert.ok(Array.isArray(JSON.parse(old.stdout)));
  const now = await runHaven(h, ['servers', '--connect', 'qemu:///system', '--json']);
  assert.equal(now.code, 0, now.stderr);
  assert.doesNotMatch(now.stderr, /deprecated/);
  assert.deepEqual(JSON.parse(now.stdout), JSON.parse(old.stdout));
});

test('restore takes the newest generation when --generation is not given', async (t) => {
  const dir = await testDir(t, 'haven-t-cli-restore');
  const h = await havenEnv(dir);
  // No store there: the command line is complete, so the store is what is missing (exit 4).
  const r = await runHaven(h, [
    'restore',
    'web01',
    '--store',
    join(dir, 'none'),
    '--to',
    join(dir, 'out'),
    '--json',
  ]);
  assert.equal(r.code, 4, r.stderr);
  assert.doesNotMatch(r.stderr, /USAGE/);
});

test('serve on a busy port: DAEMON_ADDRESS_IN_USE, how to find the other process and how to move', async (t) => {
  const h = await havenEnv(await testDir(t, 'haven-t-cli-serve'));
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.after(() => holder.close());
  const port = (holder.address() as { port: number }).port;
  const r = await runHaven(h, ['serve', '--listen', `127.0.0.1:${port}`], { timeoutMs: 60_000 });
  assert.equal(r.code, 7, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(`haven: error \\[DAEMON_ADDRESS_IN_USE\\]: cannot listen on 127\\.0\\.0\\.1:${port}`),
  );
  assert.ok(r.stderr.includes(`ss -ltnp 'sport = :${port}'`), r.stderr);
  assert.ok(r.stderr.includes(`haven serve --listen 127.0.0.1:${port + 1}`), r.stderr);
  assert.match(r.stderr, /daemon\.listen/);
});
