/**
 * Progress of a real `haven protect` (issue 20 item 6), in both places its output can go:
 *
 * - piped (not a terminal, as under cron or systemd): periodic one-line progress on stderr while
 *   the copy runs, not silence until the end;
 * - a pseudo-terminal (util-linux `script`): the bar, whose total is a size ("200 MiB"), never the
 *   raw byte count cli-progress puts in its own `{total}` token.
 *
 * A bandwidth limit stretches each copy over several seconds so there is progress to see.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv } from '../helpers/haven.ts';

const PREFIX = 'haven-t-prog';
/** `2026-12-05 21:15:03 <server>: sending vda 45% 1.20 GiB of 2.00 GiB, 35.2 MiB/s, ETA 20.0s`. */
const LINE =
  /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\S+): (\S.*?) (\d+)% [\d.]+ (?:B|KiB|MiB|GiB) of [\d.]+ (?:B|KiB|MiB|GiB), [\d.]+ (?:B|KiB|MiB|GiB)\/s, ETA \S+$/;

interface Timed {
  at: number;
  line: string;
}

/** Runs a command, noting when each stderr line arrived. */
function runTimed(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: Timed[]; endedAt: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const lines: Timed[] = [];
    let partial = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      const parts = (partial + b.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) lines.push({ at: Date.now(), line });
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (partial) lines.push({ at: Date.now(), line: partial });
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: lines, endedAt: Date.now() });
    });
  });
}

test('haven protect shows its progress: periodic lines when piped, a bar with sizes on a terminal', async (t) => {
  const dir = await testDir(t, PREFIX);
  const h = await havenEnv(dir);
  const env = { ...h.env };
  delete env.HAVEN_CONFIG;
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 64 }] });

  await t.test('piped: a line as the copy goes, not only at the end', async () => {
    await guest.writePattern('vda', 1, 160);
    const r = await runTimed(
      process.execPath,
      [HAVEN_BIN, 'protect', guest.name, '--to', store, '--bwlimit', '1MiB/s'],
      env,
    );
    const text = r.stderr.map((l) => l.line).join('\n');
    assert.equal(r.code, 0, text);
    const progress = r.stderr
      .map((l) => ({ ...l, m: LINE.exec(l.line) }))
      .filter((l): l is Timed & { m: RegExpExecArray } => l.m !== null);
    assert.ok(progress.length >= 3, `at least three progress lines:\n${text}`);
    for (const p of progress) assert.equal(p.m[2], guest.name);
    const percents = progress.map((p) => Number(p.m[4]));
    assert.deepEqual(
      percents,
      [...percents].sort((a, b) => a - b),
      'the percentage only grows',
    );
    assert.ok(percents.at(-1)! > percents[0]!, `it moved: ${percents.join(' ')}`);
    // Each line was written when it was true: the first came seconds before the end.
    assert.ok(r.endedAt - progress[0]!.at >= 3000, 'the first line arrived while the copy ran');
    assert.ok(
      progress.some((p) => /^sending/.test(p.m[3]!)),
      `the transfer phase is named:\n${text}`,
    );
    assert.doesNotMatch(text, /\x1b\[/, 'no terminal control sequences in a pipe');
  });

  await t.test('on a terminal: the bar, its total a size', async () => {
    await guest.writePattern('vda', 2, 160);
    const command = [process.execPath, HAVEN_BIN, 'protect', guest.name, '--to', store, '--bwlimit', '1MiB/s']
      .map((a) => `'${a.replace(/'/g, "'\\''")}'`)
      .join(' ');
    // script(1) runs the command on a new pseudo-terminal and copies what it draws to stdout.
    const r = await runTimed('script', ['-qefc', command, '/dev/null'], env);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal control sequences
    const screen = r.stderr.map((l) => l.line).join('\n') + r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
    assert.equal(r.code, 0, screen);
    const bars = [
      ...screen.matchAll(
        /\|[█░]+\| (\d+)% ([\d.]+ (?:B|KiB|MiB|GiB))\/(\S+ ?\S*?) [\d.]+ (?:B|KiB|MiB|GiB)\/s ETA/g,
      ),
    ];
    assert.ok(bars.length > 0, `the bar was drawn:\n${screen.slice(-3000)}`);
    for (const b of bars) {
      assert.match(b[3]!, /^[\d.]+ (B|KiB|MiB|GiB)$/, `the total is a size, not a byte count: ${b[0]}`);
    }
    assert.doesNotMatch(screen, /(B|KiB|MiB|GiB)\/\d{5,}/, 'no raw byte total anywhere');
    assert.doesNotMatch(
      screen,
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+: sending/m,
      'a terminal gets the bar, not periodic lines',
    );
  });

  await t.test('-q: nothing but the result', async () => {
    await guest.writePattern('vda', 3, 16);
    const r = await runTimed(process.execPath, [HAVEN_BIN, '-q', 'protect', guest.name, '--to', store], env);
    assert.equal(r.code, 0);
    assert.ok(!r.stderr.some((l) => LINE.test(l.line)), r.stderr.map((l) => l.line).join('\n'));
  });
});
