import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { HavenError } from '../core/errors.ts';
import { localArgs, shellQuote, spawnPeer, sshArgs } from './child.ts';

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

  it("passes an LVM store's volume groups (the URL's lvm query) as --lvm", () => {
    const args = sshArgs({ kind: 'ssh', host: 'dr1', path: '/srv/haven', lvm: 'vg_dr0,vg_dr1/pool0' });
    assert.equal(args.at(-1), 'haven receive --stdio --store /srv/haven --lvm vg_dr0,vg_dr1/pool0');
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

describe('spawnPeer', () => {
  const role = {
    noun: 'failback receiver',
    side: 'primary',
    name: 'the failback receiver',
    description: 'local',
  } as const;

  /** Runs `script` as the peer (sh -c; the haven arguments become $0…) and ends the stream. */
  async function ended(script: string) {
    const conn = spawnPeer({ kind: 'local' }, [], role, { localCommand: ['sh', '-c', script] });
    const err = await new Promise<HavenError | null>((resolve) => {
      conn.stream.on('error', (e) => resolve(e as HavenError));
      conn.stream.on('end', () => resolve(null));
      conn.stream.resume();
    });
    await conn.close();
    return err;
  }

  it('classifies exits the same for every role: 127 is a missing command, the rest a failed child', async () => {
    const missing = await ended('echo "sh: 1: haven: not found" >&2; exit 127');
    assert.equal(missing?.code, 'TRANSPORT_REMOTE_COMMAND_MISSING');
    assert.match(missing!.message, /this host cannot run haven: sh: 1: haven: not found/);
    const failed = await ended('echo "store gone" >&2; exit 3');
    assert.equal(failed?.code, 'TRANSPORT_CHILD_FAILED');
    assert.match(failed!.message, /^the failback receiver exited with code 3: store gone$/);
    assert.match(failed!.hint!, /failback receiver’s log on the primary/);
    assert.equal(await ended('exit 0'), null);
  });

  it('close() stops a peer that ignores SIGTERM with SIGKILL', async () => {
    const conn = spawnPeer({ kind: 'local' }, [], role, {
      localCommand: ['sh', '-c', 'trap "" TERM; while :; do sleep 1; done'],
      exitTimeoutMs: 200,
    });
    const failure = new Promise<HavenError>((resolve) =>
      conn.stream.on('error', (e) => resolve(e as HavenError)),
    );
    conn.stream.resume();
    const started = Date.now();
    await conn.close();
    const ms = Date.now() - started;
    assert.match((await failure).message, /^the failback receiver was killed by SIGKILL/);
    assert.ok(ms >= 5000 && ms < 15_000, `stopped after ${ms} ms (200 ms wait, SIGTERM, 5 s, SIGKILL)`);
    assert.throws(() => process.kill(conn.pid!, 0), /ESRCH/);
  });
});
