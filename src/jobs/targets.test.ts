import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../core/config.ts';
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
