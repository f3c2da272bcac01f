/**
 * Shared by the protocol-* and transport-* integration tests: scratch directories, a seeded
 * model of source disks, and a small "engine" that sends a planned delta through a StreamSender
 * and keeps the model of what the target must hold.
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { chunkDigests, rootDigest } from '../../src/core/digest.ts';
import type { StreamSender } from '../../src/protocol/index.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type Generation,
  type ResumeState,
  type Store,
} from '../../src/store/index.ts';

export const C = CHUNK_SIZE;
export const TEST_ROOT = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

/** A fresh directory under the test root, removed after the test (also on failure). */
export async function scratch(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(TEST_ROOT, `haven-t-proto-${prefix}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A connected pair of Unix domain sockets (a socketpair through a listening socket). */
export async function unixPair(dir: string): Promise<[Socket, Socket]> {
  const path = join(dir, `pair-${Math.random().toString(36).slice(2)}.sock`);
  const server = createServer();
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = netConnect(path);
  await once(client, 'connect');
  const [peer] = (await accepted) as [Socket];
  server.close();
  return [client, peer];
}

export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Content that compresses (runs of 256 bytes) but differs everywhere. */
export function content(seed: number, length: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i += 256) b.fill(Math.floor(r() * 256), i, Math.min(i + 256, length));
  return b;
}

export function domainXml(server: string, disks: readonly string[]): string {
  const devs = disks
    .map(
      (d, i) =>
        `<disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="/var/lib/libvirt/images/${d}.qcow2"/><target dev="vd${String.fromCharCode(97 + i)}" bus="virtio"/></disk>`,
    )
    .join('');
  return `<domain type="qemu"><name>${server}</name><memory unit="MiB">64</memory><devices>${devs}<disk type="file" device="cdrom"><source file="/iso/install.iso"/><target dev="sda" bus="sata"/><readonly/></disk></devices></domain>`;
}

export function makeMeta(
  server: string,
  disks: { name: string; size: number }[],
  o: Partial<DeltaMeta> = {},
): DeltaMeta {
  return {
    server,
    job: 'nightly',
    copies: 2,
    disks,
    sourceDefinition: domainXml(
      server,
      disks.map((d) => d.name),
    ),
    pointInTime: 'p1',
    takenAt: new Date().toISOString(),
    baseGenerationId: null,
    mode: 'full',
    ...o,
  };
}

export interface Op {
  disk: string;
  kind: 'data' | 'zero';
  offset: number;
  length: number;
}

/** Ops that send whole disks as data. */
export function wholeDisks(source: Record<string, Buffer>): Op[] {
  return Object.entries(source).map(([disk, b]) => ({
    disk,
    kind: 'data' as const,
    offset: 0,
    length: b.length,
  }));
}

/** Applies ops to the model of the target (zero ops zero the model; data ops copy the source). */
export function applyOps(target: Record<string, Buffer>, source: Record<string, Buffer>, ops: Op[]): void {
  for (const op of ops) {
    if (op.kind === 'zero') target[op.disk]!.fill(0, op.offset, op.offset + op.length);
    else source[op.disk]!.copy(target[op.disk]!, op.offset, op.offset, op.offset + op.length);
  }
}

/**
 * Sends `ops` (in disk order, ascending) as one delta, marking after each, then END_DELTA with
 * the summary the store expects (what a resumed delta held plus this attempt) and COMMIT.
 */
export async function sendDelta(
  sender: StreamSender,
  meta: DeltaMeta,
  source: Record<string, Buffer>,
  ops: Op[],
  o: { resume?: ResumeState | null; imageDigests?: boolean; commit?: boolean } = {},
): Promise<Generation | null> {
  const summary: Record<string, { dataBytes: number; zeroBytes: number }> = {};
  for (const d of meta.disks) {
    const s = o.resume?.staged?.[d.name];
    summary[d.name] = { dataBytes: s?.dataBytes ?? 0, zeroBytes: s?.zeroBytes ?? 0 };
  }
  for (const op of ops) {
    if (op.kind === 'data') {
      await sender.sendData(op.disk, op.offset, source[op.disk]!.subarray(op.offset, op.offset + op.length));
      summary[op.disk]!.dataBytes += op.length;
    } else {
      await sender.sendZero(op.disk, op.offset, op.length);
      summary[op.disk]!.zeroBytes += op.length;
    }
    sender.mark(op.disk, op.offset + op.length);
  }
  const last = meta.disks.at(-1)!;
  sender.mark(last.name, last.size);
  await sender.endDelta(
    { disks: summary },
    o.imageDigests ? { imageDigests: imageDigestsOf(sender.digestAlgorithm, source) } : {},
  );
  return o.commit === false ? null : sender.commit();
}

export function imageDigestsOf(
  alg: 'blake3' | 'sha256',
  images: Record<string, Buffer>,
): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, b] of Object.entries(images)) out[k] = rootDigest(alg, chunkDigests(alg, b, C));
  return out;
}

/** Reads a generation's image as the store holds it. */
export async function readImage(
  store: Store,
  server: string,
  generationId: string,
  disk: string,
): Promise<Buffer> {
  return readFile(await store.imagePath(server, generationId, disk));
}

/** Asserts-friendly summary of a store: every generation verifies and equals its model. */
export async function checkGenerations(
  store: Store,
  server: string,
  models: Map<string, Record<string, Buffer>>,
): Promise<string[]> {
  const problems: string[] = [];
  const report = await store.verify(server);
  if (!report.ok) problems.push(`verify: ${JSON.stringify(report.problems)}`);
  const m = await store.manifest(server);
  for (const g of m?.generations ?? []) {
    const model = models.get(g.id);
    if (!model) {
      problems.push(`generation ${g.id} has no model`);
      continue;
    }
    for (const [disk, want] of Object.entries(model)) {
      const got = await readImage(store, server, g.id, disk);
      if (!got.equals(want)) problems.push(`generation ${g.id} disk ${disk} differs from its model`);
    }
  }
  return problems;
}

export function clone(images: Record<string, Buffer>): Record<string, Buffer> {
  return Object.fromEntries(Object.entries(images).map(([k, v]) => [k, Buffer.from(v)]));
}
