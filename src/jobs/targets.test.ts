import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../core/config.ts';
import type { HavenError } from '../core/errors.ts';
import { resolveTarget } from './targets.ts';

const NOW = new Date('2026-03-10T12:00:00Z');
const config = (body: string) => parseConfig(`targets:\n  t:\n${body}`, 'test.yaml', NOW);

test('a target’s receiver arguments: --staging and --no-reflink, for ssh and local targets only', () => {
  assert.deepEqual(resolveTarget('t', config('    url: /srv/haven\n')).receiveArgs, []);
  assert.deepEqual(
    resolveTarget('t', config('    url: ssh://dr1/srv/haven\n    staging: auto\n    reflink: false\n'))
      .receiveArgs,
    ['--staging', 'auto', '--no-reflink'],
  );
  assert.deepEqual(resolveTarget('t', config('    url: /srv/haven\n    reflink: false\n')).receiveArgs, [
    '--no-reflink',
  ]);
  // A TLS listener runs with its own flags; nothing is passed to it.
  const tls = config('    url: tls://dr1:8471\n    reflink: false\n    tls: { ca: /ca, token_file: /t }\n');
  assert.deepEqual(resolveTarget('t', tls).receiveArgs, []);
  // A path given directly is not a configured target: defaults apply.
  assert.deepEqual(
    resolveTarget('/srv/other', config('    url: /srv/haven\n    reflink: false\n')).receiveArgs,
    [],
  );
});

test('a bare word names a configured target; a local path must look like one', () => {
  const c = parseConfig('targets:\n  dr1:\n    url: /srv/dr1\n  dr2:\n    url: /srv/dr2\n', 'test.yaml', NOW);
  assert.equal(resolveTarget('dr1', c).url, '/srv/dr1');
  for (const path of ['/srv/new', './new', '../new', 'file:///srv/new']) {
    assert.equal(resolveTarget(path, c).endpoint.kind, 'local', path);
  }
  assert.equal(resolveTarget('ssh://dr/srv/x', c).endpoint.kind, 'ssh');
  for (const typo of ['dr3', 'nosuchtarget', 'stores/dr1', 'constructor']) {
    assert.throws(
      () => resolveTarget(typo, c),
      (e: HavenError) => {
        assert.equal(e.code, 'TARGET_NOT_FOUND', typo);
        assert.equal(e.kind, 'not-found');
        assert.match(e.hint ?? '', /Configured targets: dr1, dr2\./);
        assert.match(e.hint ?? '', new RegExp(`\\./${typo.replace('/', '\\/')}`));
        return true;
      },
    );
  }
  const none = parseConfig('', 'test.yaml', NOW);
  assert.throws(() => resolveTarget('dr1', none), /no target named "dr1"/);
  assert.throws(
    () => resolveTarget('dr1', none),
    (e: HavenError) => /No target is configured/.test(e.hint ?? ''),
  );
});

test('a target’s quotas become the receiver’s --quota and --server-quota (issue 13.2)', () => {
  const c = config(
    '    url: ssh://dr1/srv/haven\n    quota: 500GiB\n    servers:\n      web01: { quota: 100GiB }\n',
  );
  assert.deepEqual(resolveTarget('t', c).receiveArgs, [
    '--quota',
    String(500 * 1024 ** 3),
    '--server-quota',
    `web01=${100 * 1024 ** 3}`,
  ]);
  // A TLS listener enforces its own flags.
  const tls = config('    url: tls://dr1:8471\n    quota: 1GiB\n    tls: { ca: /ca, token_file: /t }\n');
  assert.deepEqual(resolveTarget('t', tls).receiveArgs, []);
  assert.throws(
    () => config('    url: /srv/haven\n    quota: lots\n'),
    (e: HavenError) =>
      /targets\.t\.quota/.test(e.message) || /targets\.t\.quota/.test(JSON.stringify(e.details)),
  );
});
