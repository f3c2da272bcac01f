import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { localArgs, shellQuote, sshArgs } from './child.ts';

describe('shellQuote', () => {
  it('leaves plain words alone and quotes the rest so sh reads them back exactly', () => {
    assert.equal(shellQuote('/srv/haven'), '/srv/haven');
    for (const w of ["it's", 'a b', '$(reboot)', '`x`', 'semi;colon', '"q"', '*', '', 'new\nline']) {
      const out = execFileSync('sh', ['-c', `printf %s ${shellQuote(w)}`]).toString();
      assert.equal(out, w);
    }
  });
});

describe('sshArgs', () => {
  it('runs haven receive on the target without a terminal, in batch mode', () => {
    const args = sshArgs(
      { kind: 'ssh', user: 'root', host: 'dr1', port: 2222, path: "/srv/it's here" },
      { sshOptions: ['-i', '/k'], receiveArgs: ['--staging', '/mnt/cache'] },
    );
    assert.deepEqual(args.slice(0, 3), ['-T', '-e', 'none']);
    assert.ok(args.includes('BatchMode=yes'));
    assert.deepEqual(args.slice(-8, -2), ['-p', '2222', '-l', 'root', '-i', '/k']);
    assert.equal(args.at(-2), 'dr1');
    assert.equal(args.at(-1), `haven receive --stdio --store '/srv/it'\\''s here' --staging /mnt/cache`);
  });

  it('uses the configured remote command verbatim', () => {
    const args = sshArgs(
      { kind: 'ssh', host: 'h', path: '/s' },
      { remoteCommand: 'sudo /opt/haven/bin/haven' },
    );
    assert.equal(args.at(-1), 'sudo /opt/haven/bin/haven receive --stdio --store /s');
  });
});

describe('localArgs', () => {
  it('runs this installation’s bin/haven.mjs with node by default', () => {
    const [cmd, args] = localArgs('/srv/haven');
    assert.equal(cmd, process.execPath);
    assert.match(args[0]!, /bin\/haven\.mjs$/);
    assert.deepEqual(args.slice(1), ['receive', '--stdio', '--store', '/srv/haven']);
  });
});
