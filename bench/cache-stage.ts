/**
 * Benchmark: staging a point in time on a cache drive (engine/stage.ts), against
 * `qemu-img convert` of the same NBD export into a qcow2 in the same run.
 *
 * A fully allocated raw image of random data (made once under /var/tmp/haven-bench, page cache
 * warmed) is exported read-only by qemu-nbd, as a backup job exports a disk. Alternating, several
 * times: Haven's stageSource (plan, read, write into a qcow2 with a bitmap, re-export) into a
 * directory on the bench root's filesystem, and `qemu-img convert -O qcow2 nbd+unix://...` into
 * the same directory. Prints throughputs and the median ratio Haven/qemu-img; --json prints one
 * JSON object instead. Goal: ratio >= 0.7 (staging must run at local disk speed).
 *
 *   node --import tsx bench/cache-stage.ts [--reps 3] [--size 1GiB] [--json]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '../src/core/log.ts';
import { parseSize } from '../src/core/units.ts';
import type { Source } from '../src/engine/source.ts';
import { stageSource } from '../src/engine/stage.ts';
import { exportImage } from '../src/virt/index.ts';
import { benchDir, ensureRandomImage, warmPageCache } from './lib/fixtures.ts';
import { formatRate, median, timed } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    size: { type: 'string', default: '1GiB' },
    json: { type: 'boolean', default: false },
  },
});
const reps = Number(args.reps);
const size = parseSize(args.size!);
const say = (line: string) => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

function convert(socketPath: string, out: string): void {
  const r = spawnSync(
    'qemu-img',
    ['convert', '-f', 'raw', '-O', 'qcow2', `nbd+unix:///disk?socket=${socketPath}`, out],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  if (r.status !== 0) throw new Error(`qemu-img convert failed: ${r.stderr?.toString()}`);
  spawnSync('sync', [out]);
}

async function main(): Promise<void> {
  const image = ensureRandomImage(`random-${size}.raw`, size, say);
  warmPageCache(image);
  const dir = mkdtempSync(join(benchDir('run'), 'cache-stage-'));
  const exp = await exportImage({
    path: image,
    format: 'raw',
    readOnly: true,
    socketPath: join(dir, 'src.sock'),
    exportName: 'disk',
    cache: 'writeback',
  });
  const source = (): Source => ({
    kind: 'offline',
    pointInTime: 'bench',
    takenAt: new Date(),
    incrementalFrom: undefined,
    quiesced: true,
    disks: [
      {
        target: 'vda',
        name: 'disk',
        size,
        format: 'raw',
        path: image,
        socketPath: exp.socketPath,
        exportName: exp.exportName,
        dirtyContext: undefined,
        mode: 'full',
      },
    ],
    socketPath: undefined,
    release: async () => {},
  });
  const stage = async () => {
    const staged = await stageSource(source(), {
      server: 'bench',
      dir: join(dir, 'stage'),
      runDir: join(dir, 'run'),
      chunkSize: 65536,
      log: silentLogger,
    });
    spawnSync('sync', [join(dir, 'stage', 'disk.qcow2')]);
    return staged;
  };
  try {
    const haven: number[] = [];
    const peer: number[] = [];
    for (let i = 0; i < reps; i++) {
      const p = await timed(async () => convert(exp.socketPath, join(dir, 'peer.qcow2')));
      rmSync(join(dir, 'peer.qcow2'), { force: true });
      peer.push(size / p.seconds);
      const h = await timed(stage);
      await h.value.release();
      if (h.value.stagedBytes !== size) throw new Error(`staged ${h.value.stagedBytes} of ${size} bytes`);
      haven.push(size / h.seconds);
      say(
        `rep ${i + 1}: qemu-img convert ${formatRate(peer[i]!)}  haven stage ${formatRate(haven[i]!)}  ratio ${(haven[i]! / peer[i]!).toFixed(2)}`,
      );
    }
    const result = {
      bench: 'cache-stage',
      size,
      reps,
      havenBytesPerSecond: haven,
      qemuImgBytesPerSecond: peer,
      havenMedian: median(haven),
      qemuImgMedian: median(peer),
      ratioMedian: median(haven.map((h, i) => h / peer[i]!)),
      goal: 0.7,
    };
    if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      say(
        `median: haven ${formatRate(result.havenMedian)}, qemu-img ${formatRate(result.qemuImgMedian)}, ratio ${result.ratioMedian.toFixed(2)} (goal >= 0.7)`,
      );
    }
  } finally {
    await exp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
