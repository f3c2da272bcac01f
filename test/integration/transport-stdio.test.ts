/**
 * `haven receive --stdio` as a real child process (node + bin/haven.mjs), driven through the
 * local-path transport: full and incremental deltas, a receiver killed mid-delta (typed error,
 * then a resume from its last checkpoint), a store path it cannot use, stdout carrying nothing
 * but frames, and the command's flag checks.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { access, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { HavenError } from '../../src/core/errors.ts';
import { decodeFrame, encodeFrame, encodeJson, FrameDecoder } from '../../src/protocol/codec.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import { HAVEN_BIN, openTarget } from '../../src/transport/index.ts';
import {
  applyOps,
  C,
  checkGenerations,
  clone,
  content,
  makeMeta,
  type Op,
  scratch,
  sendDelta,
  wholeDisks,
} from './protocol-helpers.ts';

const disks = [
  { name: 'vda', size: 40 * C },
  { name: 'vdb', size: 8 * C + 512 },
];

/** Runs `haven …` to completion with stdin from `input`. */
function haven(args: string[], env: NodeJS.ProcessEnv, input?: Buffer) {
  return new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [HAVEN_BIN, ...args], { env: { ...process.env, ...env } });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/**
 * kill(2) of a running process hands the signal to its main thread, which runs the handler before
 * it reads anything more; a stopped process's threads want no signal, so kill() would leave it to
 * whichever thread wakes first. tgkill(2) aims at the main thread as kill() would while it runs
 * (Node has no tgkill; perl's syscall() reaches it, number per architecture).
 */
function signalMainThread(pid: number, signal: NodeJS.Signals): void {
  const tgkill = { x64: 234, arm64: 131 }[process.arch as 'x64' | 'arm64'];
  assert.ok(tgkill, `no tgkill number for ${process.arch}`);
  execFileSync('perl', [
    '-e',
    'syscall($ARGV[0] + 0, $ARGV[1] + 0, $ARGV[1] + 0, $ARGV[2] + 0) == 0 or die "tgkill: $!\\n"',
    String(tgkill),
    String(pid),
    String(osConstants.signals[signal]),
  ]);
}

const hello = encodeJson('HELLO', {
  protocol: 'haven-stream',
  versions: [1],
  software: 'test',
  compression: ['none'],
  digests: ['blake3'],
});

describe('haven receive --stdio as a child process', () => {
  it('carries a full and an incremental delta; the child exits 0 and logs to its run log', async (t) => {
    const dir = await scratch(t, 'stdio');
    process.env.HAVEN_LOG_DIR = join(dir, 'logs');
    const storeDir = join(dir, 'store');
    const staging = join(dir, 'cache-drive');
    const conn = await openTarget(storeDir, { receiveArgs: ['--staging', staging] });
    const sender = await StreamSender.connect(conn.stream);
    const source = { vda: content(1, disks[0]!.size), vdb: content(2, disks[1]!.size) };
    await sender.open(makeMeta('web', disks));
    const g1 = (await sendDelta(sender, makeMeta('web', disks), source, wholeDisks(source)))!;
    const models = new Map([[g1.id, clone(source)]]);
    const target = clone(source);
    const ops: Op[] = [
      { disk: 'vda', kind: 'zero', offset: 0, length: 8 * C },
      { disk: 'vda', kind: 'data', offset: 30 * C, length: 2 * C },
      { disk: 'vdb', kind: 'data', offset: 8 * C, length: 512 },
    ];
    content(3, 2 * C).copy(source.vda, 30 * C);
    content(4, 512).copy(source.vdb, 8 * C);
    const meta = makeMeta('web', disks, { pointInTime: 'p2', baseGenerationId: g1.id, mode: 'incremental' });
    await sender.open(meta);
    const g2 = (await sendDelta(sender, meta, source, ops))!;
    applyOps(target, source, ops);
    models.set(g2.id, clone(target));
    await sender.close();
    await conn.close();
    const store = await openFsStore(storeDir);
    assert.deepEqual(await checkGenerations(store, 'web', models), []);
    const { readdir } = await import('node:fs/promises');
    assert.ok((await readdir(join(dir, 'logs'))).some((f) => f.startsWith('receive-')));
    // The incremental delta was staged on the "cache drive" given with --staging.
    assert.deepEqual(await readdir(staging), ['haven-staging']);
  });

  it('a receiver killed mid-delta is a typed error; the next run resumes from its last checkpoint', async (t) => {
    const dir = await scratch(t, 'stdio-kill');
    process.env.HAVEN_LOG_DIR = join(dir, 'logs');
    const storeDir = join(dir, 'store');
    const source = { vda: content(5, disks[0]!.size), vdb: content(6, disks[1]!.size) };
    const meta = makeMeta('web', disks);

    const conn = await openTarget(storeDir, { receiveArgs: ['--checkpoint-every', `${8 * C}`] });
    const sender = await StreamSender.connect(conn.stream, { compression: { algorithm: 'none', level: 0 } });
    const staged: number[] = [];
    sender.onStaged((w) => staged.push(w.vda!));
    await sender.open(meta);
    for (let off = 0; off < 20 * C; off += 2 * C) {
      await sender.sendData('vda', off, source.vda.subarray(off, off + 2 * C));
      sender.mark('vda', off + 2 * C);
    }
    await sender.expectedDigests('vda', 0, 1);
    const durable = staged.at(-1)!;
    assert.equal(durable, 16 * C);
    process.kill(conn.pid!, 'SIGKILL');
    const err = await sender.sendData('vda', 20 * C, source.vda.subarray(20 * C, 22 * C)).then(
      async () => {
        // The data may still be queued when the child dies; the next round trip reports it.
        return sender.expectedDigests('vda', 0, 1).then(
          () => null,
          (e: HavenError) => e,
        );
      },
      (e: HavenError) => e,
    );
    assert.equal(err?.code, 'TRANSPORT_CHILD_FAILED');
    assert.equal(err?.kind, 'unavailable');
    assert.match(err!.message, /SIGKILL/);
    await sender.close();
    await conn.close();

    const again = await openTarget(storeDir);
    const s2 = await StreamSender.connect(again.stream, { compression: { algorithm: 'none', level: 0 } });
    const o = await s2.open(meta);
    // SIGKILL left no time for a final checkpoint: exactly the last STAGED watermark is durable.
    assert.equal(o.resume?.watermarks.vda, durable);
    const rest: Op[] = [
      { disk: 'vda', kind: 'data', offset: durable, length: disks[0]!.size - durable },
      { disk: 'vdb', kind: 'data', offset: 0, length: disks[1]!.size },
    ];
    const g = (await sendDelta(s2, meta, source, rest, { resume: o.resume }))!;
    assert.equal(s2.stats.dataBytes, disks[0]!.size + disks[1]!.size - durable);
    await s2.close();
    await again.close();
    const store = await openFsStore(storeDir);
    assert.deepEqual(await checkGenerations(store, 'web', new Map([[g.id, source]])), []);
  });

  it('a receiver stopped by SIGTERM checkpoints what was marked and exits 130', async (t) => {
    const dir = await scratch(t, 'stdio-term');
    process.env.HAVEN_LOG_DIR = join(dir, 'logs');
    const storeDir = join(dir, 'store');
    const source = { vda: content(7, disks[0]!.size) };
    const meta = makeMeta('web', [disks[0]!]);
    const conn = await openTarget(storeDir);
    const sender = await StreamSender.connect(conn.stream, { compression: { algorithm: 'none', level: 0 } });
    await sender.open(meta);
    await sender.sendData('vda', 0, source.vda.subarray(0, 6 * C));
    sender.mark('vda', 6 * C);
    await sender.expectedDigests('vda', 0, 1);
    process.kill(conn.pid!, 'SIGTERM');
    const err = await sender.expectedDigests('vda', 0, 1).then(
      () => null,
      (e: HavenError) => e,
    );
    assert.equal(err?.code, 'TRANSPORT_CHILD_FAILED');
    assert.match(err!.message, /code 130/);
    await sender.close();
    await conn.close();
    const again = await openTarget(storeDir);
    const s2 = await StreamSender.connect(again.stream);
    const o = await s2.open(meta);
    assert.equal(o.resume?.watermarks.vda, 6 * C);
    await s2.close();
    await again.close();
  });

  it('answers nothing that arrives after a stop signal, even when both are read in one poll', async (t) => {
    const dir = await scratch(t, 'stdio-term-order');
    const child = spawn(process.execPath, [HAVEN_BIN, 'receive', '--stdio', '--store', join(dir, 'store')], {
      env: { ...process.env, HAVEN_LOG_DIR: join(dir, 'logs') },
    });
    const decoder = new FrameDecoder();
    const types: string[] = [];
    let welcomed: () => void;
    const welcome = new Promise<void>((r) => {
      welcomed = r;
    });
    child.stdout.on('data', (b: Buffer) => {
      for (const f of decoder.push(b)) types.push(decodeFrame(f).type);
      if (types.includes('WELCOME')) welcomed();
    });
    let errText = '';
    child.stderr.on('data', (b: Buffer) => {
      errText += b.toString();
    });
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    child.stdin.on('error', () => {});
    child.stdin.write(hello);
    await welcome;
    // Stopped, the receiver cannot run between the signal and the request: when it continues,
    // one poll finds both (the order a loaded host produces by chance). BYE is answered from
    // memory, so nothing else delays the answer either.
    process.kill(child.pid!, 'SIGSTOP');
    signalMainThread(child.pid!, 'SIGTERM');
    await new Promise<void>((r) =>
      child.stdin.write(Buffer.concat(encodeFrame({ type: 'BYE', body: null })), () => r()),
    );
    await new Promise((r) => setTimeout(r, 100));
    process.kill(child.pid!, 'SIGCONT');
    assert.equal(await exited, 130, errText);
    assert.deepEqual(types, ['WELCOME']);
  });

  it('a store it cannot use fails the connection with the receiver’s own error', async (t) => {
    const dir = await scratch(t, 'stdio-badstore');
    process.env.HAVEN_LOG_DIR = join(dir, 'logs');
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    const conn = await openTarget(join(file, 'store'));
    const err = await StreamSender.connect(conn.stream).then(
      () => null,
      (e: HavenError) => e,
    );
    assert.equal(err?.code, 'TRANSPORT_CHILD_FAILED');
    assert.match(err!.message, /haven: error \[/);
    await conn.close();
  });

  it('a receiver program that cannot start is TRANSPORT_CHILD_FAILED at once', async (t) => {
    const dir = await scratch(t, 'stdio-nostart');
    const conn = await openTarget(join(dir, 'store'), { localCommand: [join(dir, 'no-such-node')] });
    const err = await StreamSender.connect(conn.stream).then(
      () => null,
      (e: HavenError) => e,
    );
    assert.equal(err?.code, 'TRANSPORT_CHILD_FAILED');
    assert.match(err!.message, /ENOENT/);
    await conn.close();
  });

  it('writes nothing but frames to stdout, and exits 10 on a truncated frame', async (t) => {
    const dir = await scratch(t, 'stdio-raw');
    const env = { HAVEN_LOG_DIR: join(dir, 'logs') };
    const store = join(dir, 'store');
    const ok = await haven(
      ['-v', 'receive', '--stdio', '--store', store],
      env,
      Buffer.concat([hello, ...encodeFrame({ type: 'BYE', body: null })]),
    );
    assert.equal(ok.code, 0, ok.stderr);
    const frames = new FrameDecoder().push(ok.stdout).map(decodeFrame);
    assert.deepEqual(
      frames.map((f) => f.type),
      ['WELCOME', 'BYE'],
    );
    assert.match(ok.stderr, /session started/);

    const cut = await haven(
      ['receive', '--stdio', '--store', store],
      env,
      Buffer.concat([hello, hello.subarray(0, 5)]),
    );
    assert.equal(cut.code, 10);
    assert.match(cut.stderr, /PROTO_TRUNCATED/);
  });

  it('checks its flags', async (t) => {
    const dir = await scratch(t, 'stdio-flags');
    const env = { HAVEN_LOG_DIR: join(dir, 'logs') };
    const store = join(dir, 'store');
    for (const [args, code, text] of [
      [['receive', '--store', store], 2, /exactly one of --stdio and --listen/],
      [['receive', '--stdio', '--listen', '127.0.0.1:1', '--store', store], 2, /exactly one/],
      [['receive', '--stdio', '--tls-ca', '/x', '--store', store], 2, /--listen only/],
      [['receive', '--listen', '127.0.0.1:1', '--store', store], 2, /--tls-cert and --tls-key/],
      [
        ['receive', '--listen', '127.0.0.1:1', '--tls-cert', 'c', '--tls-key', 'k', '--store', store],
        2,
        /TRANSPORT_NO_AUTH/,
      ],
      [
        [
          'receive',
          '--listen',
          'nonsense',
          '--tls-cert',
          'c',
          '--tls-key',
          'k',
          '--tls-ca',
          'a',
          '--store',
          store,
        ],
        2,
        /ADDRESS:PORT/,
      ],
      [['receive', '--stdio', '--store', store, '--checkpoint-every', 'lots'], 2, /BAD_SIZE/],
    ] as [string[], number, RegExp][]) {
      const r = await haven(args, env);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, text);
      assert.equal(r.stdout.length, 0);
    }
    // None of those refusals created the store.
    await assert.rejects(access(store));
  });
});
