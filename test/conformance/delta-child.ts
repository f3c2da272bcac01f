/**
 * A writer in its own process, for crash tests: opens the store through the implementation's
 * opener module, sends a prepared delta, seals and commits it. The parent kills it at a store
 * step (HAVEN_STORE_CRASH_AT) or asks it to kill itself mid-stage (`killAfter`).
 *
 * Usage: node --import tsx delta-child.ts <job.json>
 */
import { readFile } from 'node:fs/promises';
import { chunkDigests } from '../../src/core/digest.ts';
import type { DeltaMeta, DeltaSummary, Store } from '../../src/store/types.ts';
import { CHUNK_SIZE } from '../../src/store/types.ts';
import { type Extent, MAX_DATA_EXTENT } from './model.ts';

export interface ChildJob {
  /** Module exporting `openStoreForTest(location: string): Promise<Store>`. */
  opener: string;
  location: string;
  meta: DeltaMeta;
  /** `dataAt`: where a data extent's bytes are in `dataFile`. */
  extents: (Extent & { dataAt: number })[];
  dataFile: string;
  summary: DeltaSummary;
  /** checkpoint() after this many extents. */
  checkpointAfter?: number;
  /** Kill this process (SIGKILL) after this many extents, before sealing. */
  killAfter?: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(await readFile(process.argv[2]!, 'utf8')) as ChildJob;
  const { openStoreForTest } = (await import(job.opener)) as { openStoreForTest(l: string): Promise<Store> };
  const store = await openStoreForTest(job.location);
  const alg = store.descriptor.digest;
  const data = await readFile(job.dataFile);
  const w = await store.openDelta(job.meta);
  const position: Record<string, number> = {};
  let n = 0;
  for (const e of job.extents) {
    if (e.kind === 'data') {
      for (let off = 0; off < e.length; off += MAX_DATA_EXTENT) {
        const piece = data.subarray(e.dataAt + off, e.dataAt + Math.min(e.length, off + MAX_DATA_EXTENT));
        await w.writeData(e.disk, e.offset + off, piece, chunkDigests(alg, piece, CHUNK_SIZE));
      }
    } else {
      await w.writeZero(e.disk, e.offset, e.length);
    }
    for (const d of job.meta.disks) {
      if (d.name === e.disk) break;
      position[d.name] = d.size;
    }
    position[e.disk] = e.offset + e.length;
    n++;
    if (n === job.checkpointAfter) await w.checkpoint({ ...position });
    if (n === job.killAfter) process.kill(process.pid, 'SIGKILL');
  }
  await w.seal(job.summary);
  const gen = await w.commit();
  process.stdout.write(`${JSON.stringify(gen)}\n`);
  await store.close();
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n${JSON.stringify(e)}\n`);
  process.exit(1);
});
