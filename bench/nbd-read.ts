/**
 * Benchmark: Haven's NBD client reading a whole export, against nbdcopy in the same run.
 *
 * A 2 GiB fully allocated raw image of random data (made once under /var/tmp/haven-bench) is
 * exported read-only by qemu-nbd on a unix socket, its page cache warmed first. Then, alternating,
 * several times: `nbdcopy nbd+unix:///?socket=... null:` and Haven's client reading every byte
 * into reused buffers (the data is discarded). Prints each throughput and the median ratio
 * Haven/nbdcopy; --json prints one JSON object instead.
 *
 *   node --import tsx bench/nbd-read.ts [--reps 5] [--request-size 256KiB] [--in-flight 16]
 *        [--connections 1] [--no-direct] [--size 2GiB] [--json]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../src/core/units.ts';
import { NbdClient } from '../src/nbd/client.ts';
import { NbdPool } from '../src/nbd/pool.ts';
import { startQemuNbd } from '../src/nbd/qemu-nbd.ts';
import { benchDir, ensureRandomImage, warmPageCache } from './lib/fixtures.ts';
import { formatRate, median, timed } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    'request-size': { type: 'string', default: '256KiB' },
    'in-flight': { type: 'string', default: '16' },
    'no-direct': { type: 'boolean', default: false },
    connections: { type: 'string', default: '1' },
    size: { type: 'string', default: '2GiB' },
    json: { type: 'boolean', default: false },
  },
});

const reps = Number(args.reps);
const requestSize = parseSize(args['request-size']!);
const inFlight = Number(args['in-flight']);
const connections = Number(args.connections);
const size = parseSize(args.size!);
const directReceive = !args['no-direct'];
const say = (line: string) => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

/** Reads the whole export with `inFlight` workers, each reusing one buffer of requestSize. */
async function havenRead(socketPath: string): Promise<number> {
  const src =
    connections > 1
      ? await NbdPool.connect({ socketPath, connections, maxInFlight: inFlight, directReceive })
      : await NbdClient.connect({ socketPath, maxInFlight: inFlight, directReceive });
  const total = src.size;
  let next = 0;
  const worker = async () => {
    const buf = Buffer.allocUnsafe(requestSize);
    while (next < total) {
      const off = next;
      next += requestSize;
      await src.readInto(off, buf, 0, Math.min(requestSize, total - off));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  await src.close();
  return total;
}

function nbdcopyRead(socketPath: string): void {
  const r = spawnSync('nbdcopy', [`nbd+unix:///?socket=${socketPath}`, 'null:'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  if (r.status !== 0) throw new Error(`nbdcopy failed: ${r.stderr?.toString() ?? r.error?.message}`);
}

async function main(): Promise<void> {
  const image = ensureRandomImage(`random-${size}.raw`, size, say);
  say(`warming the page cache for ${image}`);
  warmPageCache(image);
  const dir = mkdtempSync(join(benchDir('run'), 'nbd-read-'));
  const server = await startQemuNbd({
    image,
    format: 'raw',
    readOnly: true,
    socketPath: join(dir, 'nbd.sock'),
    pidFile: join(dir, 'qemu-nbd.pid'),
    shared: 32,
  });
  const socketPath = server.socketPath!;
  try {
    say(`warm-up (request ${requestSize} B, ${inFlight} in flight, ${connections} connection(s))`);
    await havenRead(socketPath);
    nbdcopyRead(socketPath);
    const haven: number[] = [];
    const nbdcopy: number[] = [];
    for (let i = 0; i < reps; i++) {
      const n = await timed(async () => nbdcopyRead(socketPath));
      nbdcopy.push(size / n.seconds);
      const h = await timed(() => havenRead(socketPath));
      haven.push(h.value / h.seconds);
      say(
        `rep ${i + 1}: nbdcopy ${formatRate(nbdcopy[i]!)}  haven ${formatRate(haven[i]!)}  ratio ${(haven[i]! / nbdcopy[i]!).toFixed(2)}`,
      );
    }
    const ratios = haven.map((h, i) => h / nbdcopy[i]!);
    const result = {
      bench: 'nbd-read',
      size,
      requestSize,
      inFlight,
      connections,
      directReceive,
      reps,
      havenBytesPerSecond: haven,
      nbdcopyBytesPerSecond: nbdcopy,
      havenMedian: median(haven),
      nbdcopyMedian: median(nbdcopy),
      ratioMedian: median(ratios),
      goal: 0.7,
    };
    if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      say(
        `median: haven ${formatRate(result.havenMedian)}, nbdcopy ${formatRate(result.nbdcopyMedian)}, ratio haven/nbdcopy ${result.ratioMedian.toFixed(2)} (goal >= 0.7)`,
      );
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
