/**
 * The store conformance suite: what every Store implementation must do, written against the
 * Store / DeltaWriter interface only (DESIGN §3: "one conformance test suite run against every
 * implementation"). A store's test file calls `storeConformance(name, factory)`.
 *
 * The factory returns a fresh, empty store plus a few hooks for what the interface does not
 * expose: the image names present (§4.1 naming), how a child process opens the same store (crash
 * tests), and optionally allocated bytes (sparse images).
 *
 * Every check compares against an independent model (model.ts): the exact bytes each generation
 * must hold, from a seeded generator.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { alignedBuffer } from '../../src/core/aligned-memory.ts';
import { chunkDigests } from '../../src/core/digest.ts';
import { DomainXml } from '../../src/core/domain-xml.ts';
import { HavenError } from '../../src/core/errors.ts';
import { CRASH_ENV, CRASH_STEPS, type CrashStep } from '../../src/store/crash.ts';
import type { DeltaMeta, DeltaMode, DiskSpec, Generation, Store } from '../../src/store/types.ts';
import { CHUNK_SIZE } from '../../src/store/types.ts';
import type { ChildJob } from './delta-child.ts';
import {
  type Content,
  cloneContent,
  dataChunks,
  type Extent,
  extentsForChunks,
  fullExtents,
  initialContent,
  mutate,
  Rng,
  resyncExtents,
  sendExtents,
  summaryOf,
  withStaged,
} from './model.ts';

export interface StoreUnderTest {
  store: Store;
  cleanup(): Promise<void>;
  /** Names of the images present, without suffix (`Web01_Web01_0_1`). */
  listImages(): Promise<string[]>;
  /** How a child process opens this same store: a module exporting `openStoreForTest(location)`. */
  child: { opener: string; location: string };
  /** Bytes allocated to an image (sparse stores only); absent for stores that preallocate. */
  allocatedBytes?(path: string): Promise<number>;
}

export type StoreFactory = () => Promise<StoreUnderTest>;

const TEST_ROOT = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
const CHILD = fileURLToPath(new URL('./delta-child.ts', import.meta.url));

export function domainXml(server: string, disks: readonly string[]): string {
  const diskXml = disks
    .map(
      (d, i) => `    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/${d}.qcow2'/>
      <target dev='vd${String.fromCharCode(97 + i)}' bus='virtio'/>
    </disk>`,
    )
    .join('\n');
  return `<domain type='qemu'>
  <name>${server}</name>
  <memory unit='KiB'>262144</memory>
  <devices>
${diskXml}
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/isos/installer.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
  </devices>
</domain>`;
}

export function code(c: string) {
  return (e: unknown) => {
    assert.ok(e instanceof HavenError, `expected a HavenError ${c}, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

interface ModelGeneration {
  id: string;
  pit: string;
  disks: DiskSpec[];
  content: Content;
}

export interface Prepared {
  meta: DeltaMeta;
  content: Content;
  disks: DiskSpec[];
  /** Extents of an incremental or full send (resync computes its own against the writer). */
  extents: Extent[];
}

/** One protected server as the sender sees it, and what the store must hold for it. */
export class ServerSim {
  gens: ModelGeneration[] = [];
  run = 0;
  readonly rng: Rng;
  constructor(
    readonly store: Store,
    readonly server: string,
    public disks: DiskSpec[],
    public copies: number,
    seed: number,
    readonly listImages?: () => Promise<string[]>,
  ) {
    this.rng = new Rng(seed);
  }

  get alg() {
    return this.store.descriptor.digest;
  }

  get base(): string | null {
    return this.gens[0]?.id ?? null;
  }

  meta(pit: string, mode: DeltaMode, disks = this.disks): DeltaMeta {
    return {
      server: this.server,
      job: 'nightly',
      copies: this.copies,
      disks,
      sourceDefinition: domainXml(
        this.server,
        disks.map((d) => d.name),
      ),
      pointInTime: pit,
      takenAt: new Date().toISOString(),
      baseGenerationId: this.base,
      mode,
    };
  }

  /** The next point in time: new content and what changed since the newest generation. */
  prepare(
    options: {
      writes?: number;
      zeroRanges?: number;
      zeroChunks?: number;
      mode?: DeltaMode;
      from?: Content;
    } = {},
  ): Prepared {
    this.run++;
    const pit = `${this.server}-pit-${this.run}`;
    if (!this.gens.length && !options.from) {
      const content = initialContent(this.rng, this.disks);
      return {
        meta: this.meta(pit, 'full'),
        content,
        disks: this.disks,
        extents: fullExtents(content, this.disks),
      };
    }
    // Changes from `from` (a partial delta's point in time) or from the newest generation.
    const m = mutate(this.rng, options.from ?? this.gens[0]!.content, this.disks, options);
    if (!this.gens.length) {
      return {
        meta: this.meta(pit, 'full'),
        content: m.content,
        disks: this.disks,
        extents: fullExtents(m.content, this.disks),
      };
    }
    return {
      meta: this.meta(pit, options.mode ?? 'incremental'),
      content: m.content,
      disks: this.disks,
      extents: extentsForChunks(m.content, this.disks, m.touched),
    };
  }

  adopt(gen: Pick<Generation, 'id'>, p: Prepared): void {
    this.gens.unshift({
      id: gen.id,
      pit: p.meta.pointInTime,
      disks: p.disks,
      content: cloneContent(p.content),
    });
    this.gens = this.gens.slice(0, this.copies);
  }

  /** A complete run: open, send, seal, commit. */
  async runDelta(
    options: Parameters<ServerSim['prepare']>[0] & { resync?: boolean; inFlight?: number } = {},
  ): Promise<Generation> {
    const p = this.prepare(options);
    const w = await this.store.openDelta(p.meta);
    assert.equal(w.resumed, null, 'a fresh run continues no partial delta');
    const extents = options.resync ? await resyncExtents(w, this.alg, p.content, p.disks) : p.extents;
    const r = await sendExtents(w, this.alg, p.content, p.disks, extents, {
      checkpointEvery: 3,
      ...(options.inFlight ? { inFlight: options.inFlight } : {}),
    });
    await w.seal(r.sent);
    const gen = await w.commit();
    assert.equal(gen.pointInTime, p.meta.pointInTime);
    assert.equal(gen.seq, 1);
    this.adopt(gen, p);
    return gen;
  }

  expectedImages(): string[] {
    return this.gens.flatMap((g, i) => g.disks.map((d) => `${this.server}_${d.name}_${i + 1}`)).sort();
  }

  async images(): Promise<string[]> {
    return (await this.listImages!()).filter((n) => n.startsWith(`${this.server}_`)).sort();
  }

  /** The store holds exactly the model: generations, order, names, bytes, digests. */
  async check(what: string): Promise<void> {
    const m = await this.store.manifest(this.server);
    assert.ok(m, `${what}: manifest exists`);
    assert.deepEqual(
      m.generations.map((g) => g.pointInTime),
      this.gens.map((g) => g.pit),
      `${what}: generations newest first`,
    );
    assert.deepEqual(
      m.generations.map((g) => g.id),
      this.gens.map((g) => g.id),
      `${what}: generation ids`,
    );
    for (const [i, g] of m.generations.entries()) {
      const model = this.gens[i]!;
      assert.equal(g.seq, i + 1, `${what}: seq`);
      assert.deepEqual(
        g.disks.map((d) => [d.name, d.size, d.image]),
        model.disks.map((d) => [d.name, d.size, `${this.server}_${d.name}_${i + 1}`]),
        `${what}: disks of generation ${i + 1}`,
      );
      for (const d of model.disks) {
        const want = model.content.get(d.name)!;
        const r = await this.store.openImage(this.server, g.id, d.name);
        try {
          assert.equal(r.size, d.size);
          const got = await r.read(0, d.size);
          if (!got.equals(want)) {
            let c = 0;
            while (
              got
                .subarray(c * CHUNK_SIZE, (c + 1) * CHUNK_SIZE)
                .equals(want.subarray(c * CHUNK_SIZE, (c + 1) * CHUNK_SIZE))
            )
              c++;
            assert.fail(
              `${what}: ${this.server} generation ${i + 1} disk ${d.name} differs from the model at chunk ${c}`,
            );
          }
        } finally {
          await r.close();
        }
        const n = Math.ceil(d.size / CHUNK_SIZE);
        const digests = await this.store.readDigests(this.server, g.id, d.name, 0, n);
        assert.ok(
          digests.equals(chunkDigests(this.alg, want, CHUNK_SIZE)),
          `${what}: digests of generation ${i + 1} disk ${d.name}`,
        );
      }
    }
    if (this.listImages) assert.deepEqual(await this.images(), this.expectedImages(), `${what}: image names`);
  }
}

export async function scratch(t: TestContext): Promise<string> {
  await mkdir(TEST_ROOT, { recursive: true });
  const dir = await mkdtemp(join(TEST_ROOT, 'conformance-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function runChild(
  t: TestContext,
  sut: StoreUnderTest,
  p: Prepared,
  extents: Extent[],
  summary: ChildJob['summary'],
  options: { crashAt?: CrashStep; checkpointAfter?: number; killAfter?: number },
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const dir = await scratch(t);
  const chunks: Buffer[] = [];
  let at = 0;
  const withData = extents.map((e) => {
    const dataAt = at;
    if (e.kind === 'data') {
      chunks.push(p.content.get(e.disk)!.subarray(e.offset, e.offset + e.length));
      at += e.length;
    }
    return { ...e, dataAt };
  });
  const job: ChildJob = {
    opener: sut.child.opener,
    location: sut.child.location,
    meta: p.meta,
    extents: withData,
    dataFile: join(dir, 'data'),
    summary,
    ...(options.checkpointAfter !== undefined ? { checkpointAfter: options.checkpointAfter } : {}),
    ...(options.killAfter !== undefined ? { killAfter: options.killAfter } : {}),
  };
  await writeFile(job.dataFile, Buffer.concat(chunks));
  await writeFile(join(dir, 'job.json'), JSON.stringify(job));
  const env = { ...process.env };
  delete env[CRASH_ENV];
  if (options.crashAt) env[CRASH_ENV] = options.crashAt;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, join(dir, 'job.json')], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.stdout.resume();
    // A writer stuck (on a lock, say) must fail the test, not pass as a crash.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the delta child did not finish within 60 s: ${stderr}`));
    }, 60_000);
    child.on('error', reject);
    child.on('close', (c, signal) => {
      clearTimeout(timer);
      resolve({ code: c, signal, stderr });
    });
  });
}

export const WEB01_DISKS: DiskSpec[] = [
  { name: 'Web01_0', size: 2 * 1024 * 1024 },
  { name: 'Web01_1', size: 1024 * 1024 + 12 * 1024 },
];

/** Crash tests start a process per step: small disks keep them quick. */
export const SMALL_WEB01_DISKS: DiskSpec[] = [
  { name: 'Web01_0', size: 640 * 1024 },
  { name: 'Web01_1', size: 256 * 1024 + 12 * 1024 },
];

export function disksFor(server: string): DiskSpec[] {
  return [
    { name: `${server}_0`, size: 2 * 1024 * 1024 },
    { name: `${server}_1`, size: 1024 * 1024 + 12 * 1024 },
  ];
}

export function storeConformance(name: string, factory: StoreFactory): void {
  async function fresh(t: TestContext): Promise<StoreUnderTest> {
    const sut = await factory();
    t.after(() => sut.cleanup());
    return sut;
  }

  describe(`store conformance: ${name}`, () => {
    test('names and rotation follow DESIGN §4.1 for copies 1, 2 and 3 over 6 runs of a two-disk server', async (t) => {
      const sut = await fresh(t);
      const sims = [3, 2, 1].map(
        (copies, i) =>
          new ServerSim(
            sut.store,
            ['Web01', 'App02', 'Db03'][i]!,
            disksFor(['Web01', 'App02', 'Db03'][i]!),
            copies,
            100 + i,
            sut.listImages,
          ),
      );
      sims[0]!.disks = WEB01_DISKS;
      for (let run = 1; run <= 6; run++) {
        for (const sim of sims) {
          const before = sim.gens.map((g) => g.id);
          const gen = await sim.runDelta();
          // The new generation is _1, every other moved up by one, the oldest beyond N is gone.
          assert.deepEqual(
            sim.gens.map((g) => g.id),
            [gen.id, ...before].slice(0, sim.copies),
          );
          await sim.check(`${sim.server} copies ${sim.copies} run ${run}`);
          assert.ok(
            !(await sim.images()).some((n) => n.endsWith('_incomplete')),
            'no _incomplete left behind',
          );
        }
        if (run === 3) {
          // The worked example of DESIGN §4.1 and the Anvil! DR page, literally.
          assert.deepEqual(await sims[0]!.images(), [
            'Web01_Web01_0_1',
            'Web01_Web01_0_2',
            'Web01_Web01_0_3',
            'Web01_Web01_1_1',
            'Web01_Web01_1_2',
            'Web01_Web01_1_3',
          ]);
        }
      }
      assert.deepEqual((await sut.store.listServers()).sort(), ['App02', 'Db03', 'Web01']);
      const report = await sut.store.verify();
      assert.equal(report.ok, true, JSON.stringify(report.problems));
      assert.equal(report.checkedGenerations, 3 + 2 + 1);
    });

    test('every generation holds its point in time after full, incremental, resync and zero-range deltas', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'mix', disksFor('mix'), 3, 7, sut.listImages);
      const sparse = async (what: string) => {
        if (!sut.allocatedBytes) return;
        for (const [i, g] of sim.gens.entries()) {
          for (const d of g.disks) {
            const path = await sut.store.imagePath(sim.server, g.id, d.name);
            const allocated = await sut.allocatedBytes(path);
            const limit = dataChunks(g.content.get(d.name)!) * CHUNK_SIZE + 2 * CHUNK_SIZE;
            assert.ok(
              allocated <= limit,
              `${what}: generation ${i + 1} ${d.name} allocates ${allocated} > ${limit} bytes`,
            );
          }
        }
      };
      await sim.runDelta();
      await sim.check('full');
      await sparse('full');
      await sim.runDelta({ writes: 10, zeroRanges: 2 });
      await sim.check('incremental');
      await sim.runDelta({ writes: 8, zeroRanges: 1, mode: 'resync', resync: true });
      await sim.check('resync');
      // A large discard over data: the newest image must give the space back.
      await sim.runDelta({ writes: 1, zeroRanges: 1, zeroChunks: 20 });
      await sim.check('zero range');
      await sparse('zero range');
      await sim.runDelta({ writes: 12, zeroRanges: 3 });
      await sim.check('incremental after rotation');
      await sparse('after rotation');
      // A resync against an unchanged source sends nothing at all.
      const p = sim.prepare({ writes: 0, zeroRanges: 0, mode: 'resync', from: sim.gens[0]!.content });
      const w = await sut.store.openDelta(p.meta);
      assert.deepEqual(await resyncExtents(w, sim.alg, p.content, p.disks), []);
      await w.seal(summaryOf([], p.disks));
      sim.adopt(await w.commit(), p);
      await sim.check('empty delta');
    });

    test('data writes issued before earlier ones settled land in call order, a range written twice too', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'par', disksFor('par'), 2, 17, sut.listImages);
      await sim.runDelta({ inFlight: 4 });
      await sim.check('full, 4 writes in flight');
      await sim.runDelta({ writes: 12, zeroRanges: 2, inFlight: 4 });
      await sim.check('incremental, 4 writes in flight');
      // A range written twice without waiting: one large write of junk, then the real bytes in
      // small pieces that finish first. The later calls must still win, digests included.
      const p = sim.prepare({ writes: 6, zeroRanges: 0 });
      const w = await sut.store.openDelta(p.meta);
      const r = await sendExtents(w, sim.alg, p.content, p.disks, p.extents);
      const d = p.disks[0]!;
      const junk = Buffer.alloc(d.size, 0xa5);
      const writes = [w.writeData(d.name, 0, junk, chunkDigests(sim.alg, junk, CHUNK_SIZE))];
      const real = p.content.get(d.name)!;
      for (let off = 0; off < d.size; off += CHUNK_SIZE) {
        // Aligned memory, as the receiver hands over: nothing serialises these writes.
        const piece = alignedBuffer(CHUNK_SIZE);
        real.copy(piece, 0, off, off + CHUNK_SIZE);
        writes.push(w.writeData(d.name, off, piece, chunkDigests(sim.alg, piece, CHUNK_SIZE)));
      }
      await Promise.all(writes);
      const n = d.size / CHUNK_SIZE;
      assert.ok((await w.expectedDigests(d.name, 0, n)).equals(chunkDigests(sim.alg, real, CHUNK_SIZE)));
      r.sent.disks[d.name]!.dataBytes += 2 * d.size;
      await w.seal(r.sent);
      sim.adopt(await w.commit(), p);
      await sim.check('a range written twice');
    });

    test('expectedDigests: the base generation overlaid with what is staged', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'exp', disksFor('exp'), 2, 11, sut.listImages);
      await sim.runDelta();
      const p = sim.prepare({ writes: 5, zeroRanges: 1 });
      const w = await sut.store.openDelta(p.meta);
      t.after(() => w.close());
      const d = p.disks[1]!;
      const n = Math.ceil(d.size / CHUNK_SIZE);
      const base = sim.gens[0]!.content.get(d.name)!;
      assert.ok((await w.expectedDigests(d.name, 0, n)).equals(chunkDigests(sim.alg, base, CHUNK_SIZE)));
      await sendExtents(w, sim.alg, p.content, p.disks, p.extents);
      assert.ok(
        (await w.expectedDigests(d.name, 0, n)).equals(
          chunkDigests(sim.alg, p.content.get(d.name)!, CHUNK_SIZE),
        ),
      );
      assert.ok(
        (await w.expectedDigests(d.name, n - 2, 2)).equals(
          chunkDigests(sim.alg, p.content.get(d.name)!.subarray((n - 2) * CHUNK_SIZE), CHUNK_SIZE),
        ),
      );
      await assert.rejects(w.expectedDigests(d.name, n - 1, 2), code('STORE_BAD_RANGE'));
      await assert.rejects(w.expectedDigests('nope', 0, 1), code('STORE_UNKNOWN_DISK'));
      await assert.rejects(
        w.writeData(d.name, 100, Buffer.alloc(CHUNK_SIZE), Buffer.alloc(32)),
        code('STORE_BAD_EXTENT'),
      );
      await assert.rejects(
        w.writeZero(d.name, d.size - CHUNK_SIZE, 2 * CHUNK_SIZE),
        code('STORE_BAD_EXTENT'),
      );
      await assert.rejects(w.commit(), code('STORE_DELTA_STATE'));
    });

    test('resume: a delta closed without seal continues from its watermarks (first run and incremental)', async (t) => {
      const sut = await fresh(t);
      for (const [server, setupRuns] of [
        ['res1', 0],
        ['res2', 2],
      ] as const) {
        const sim = new ServerSim(sut.store, server, disksFor(server), 2, 21, sut.listImages);
        for (let i = 0; i < setupRuns; i++) await sim.runDelta();
        const p = sim.prepare({ writes: 14, zeroRanges: 2 });
        const w1 = await sut.store.openDelta(p.meta);
        assert.equal(w1.resumed, null);
        const half = Math.max(2, Math.floor(p.extents.length / 2));
        const first = await sendExtents(w1, sim.alg, p.content, p.disks, p.extents, {
          checkpointEvery: half,
          stopAfter: half + 2,
        });
        await w1.close();
        if (setupRuns) await sim.check(`${server}: a closed partial changes no generation`);
        else assert.equal(await sut.store.manifest(server), null, 'a partial first run is no generation');

        const w2 = await sut.store.openDelta(p.meta);
        assert.ok(w2.resumed, 'the partial delta is continued');
        assert.equal(w2.resumed.deltaId, w1.deltaId);
        assert.equal(w2.deltaId, w1.deltaId);
        assert.equal(w2.resumed.pointInTime, p.meta.pointInTime);
        assert.deepEqual(w2.resumed.watermarks, first.watermarks);
        // A store keeps at least what was checkpointed, and may keep everything that arrived
        // before close(); `staged` says which.
        const skipped = p.extents.filter((e) => e.offset + e.length <= (first.watermarks[e.disk] ?? 0));
        const options = [summaryOf(skipped, p.disks).disks, first.sent.disks];
        assert.ok(
          options.some((o) => JSON.stringify(o) === JSON.stringify(w2.resumed!.staged)),
          `staged ${JSON.stringify(w2.resumed.staged)} is the checkpoint or everything sent`,
        );
        assert.equal(
          w2.resumed.stagedBytes,
          Object.values(w2.resumed.staged!).reduce((n, c) => n + c.dataBytes + c.zeroBytes, 0),
        );
        const rest = await sendExtents(w2, sim.alg, p.content, p.disks, p.extents, {
          from: w2.resumed.watermarks,
        });
        await w2.seal(withStaged(rest.sent, w2.resumed.staged));
        sim.adopt(await w2.commit(), p);
        await sim.check(`${server}: resumed delta`);
      }
    });

    test('resume under a new point in time: expectedDigests tell the sender what to send', async (t) => {
      const sut = await fresh(t);
      for (const [server, setupRuns] of [
        ['newpit1', 0],
        ['newpit2', 1],
      ] as const) {
        const sim = new ServerSim(sut.store, server, disksFor(server), 3, 31, sut.listImages);
        for (let i = 0; i < setupRuns; i++) await sim.runDelta();
        const a = sim.prepare({ writes: 14, zeroRanges: 2 });
        const w1 = await sut.store.openDelta(a.meta);
        await sendExtents(w1, sim.alg, a.content, a.disks, a.extents, { checkpointEvery: 4, stopAfter: 9 });
        await w1.close();
        // The source moved on: a new point in time whose content differs from the partial's.
        const b = sim.prepare({ writes: 9, zeroRanges: 2, zeroChunks: 6, mode: 'resync', from: a.content });
        const w2 = await sut.store.openDelta(b.meta);
        assert.ok(w2.resumed);
        assert.equal(w2.resumed.pointInTime, a.meta.pointInTime);
        const extents = await resyncExtents(w2, sim.alg, b.content, b.disks);
        const r = await sendExtents(w2, sim.alg, b.content, b.disks, extents, { checkpointEvery: 5 });
        await w2.seal(withStaged(r.sent, w2.resumed.staged));
        const gen = await w2.commit();
        assert.equal(gen.pointInTime, b.meta.pointInTime);
        sim.adopt(gen, b);
        await sim.check(`${server}: resumed under a new point in time`);
      }
    });

    test('discard throws a partial delta away and leaves the generations alone', async (t) => {
      const sut = await fresh(t);
      for (const [server, setupRuns] of [
        ['disc1', 0],
        ['disc2', 1],
      ] as const) {
        const sim = new ServerSim(sut.store, server, disksFor(server), 2, 41, sut.listImages);
        for (let i = 0; i < setupRuns; i++) await sim.runDelta();
        const p = sim.prepare();
        const w = await sut.store.openDelta(p.meta);
        await sendExtents(w, sim.alg, p.content, p.disks, p.extents, { checkpointEvery: 2 });
        await w.discard();
        if (setupRuns) await sim.check(`${server}: after discard`);
        else assert.deepEqual(await sim.images(), [], 'a discarded first run leaves no image');
        const w2 = await sut.store.openDelta(p.meta);
        assert.equal(w2.resumed, null, 'nothing left to resume');
        await w2.close();
      }
    });

    test('crash mid-stage (writer killed after a checkpoint): the next attempt completes the delta', async (t) => {
      const sut = await fresh(t);
      for (const [server, setupRuns, samePit] of [
        ['stage1', 0, true],
        ['stage2', 1, true],
        ['stage3', 0, false],
        ['stage4', 1, false],
      ] as const) {
        const sim = new ServerSim(sut.store, server, disksFor(server), 2, 51, sut.listImages);
        for (let i = 0; i < setupRuns; i++) await sim.runDelta();
        const a = sim.prepare({ writes: 14, zeroRanges: 2 });
        const res = await runChild(t, sut, a, a.extents, summaryOf(a.extents, a.disks), {
          checkpointAfter: 4,
          killAfter: 8,
        });
        assert.equal(res.signal, 'SIGKILL', res.stderr);
        await sut.store.recover();
        if (setupRuns) await sim.check(`${server}: generations intact after the crash`);
        const p = samePit
          ? a
          : sim.prepare({ writes: 6, zeroRanges: 2, zeroChunks: 8, mode: 'resync', from: a.content });
        const w = await sut.store.openDelta(p.meta);
        assert.ok(w.resumed, `${server}: the partial survived the crash`);
        const extents = samePit ? p.extents : await resyncExtents(w, sim.alg, p.content, p.disks);
        const r = await sendExtents(
          w,
          sim.alg,
          p.content,
          p.disks,
          extents,
          samePit ? { from: w.resumed.watermarks } : {},
        );
        await w.seal(withStaged(r.sent, w.resumed.staged));
        sim.adopt(await w.commit(), p);
        await sim.check(`${server}: completed after a crash mid-stage`);
      }
    });

    describe('crash at every commit step, then recover()', { concurrency: 4 }, () => {
      // A first run has no renames and nothing to apply; a copied slot differs from a recycled
      // one only in how the slot is filled, so only those steps are repeated for it.
      const scenarios: { label: string; copies: number; setupRuns: number; steps: readonly CrashStep[] }[] = [
        {
          label: 'first run',
          copies: 2,
          setupRuns: 0,
          steps: [
            'after-seal',
            'after-journal',
            'after-digests',
            'after-definition',
            'after-manifest',
            'after-final-rename',
          ],
        },
        { label: 'copies 3, oldest recycled', copies: 3, setupRuns: 3, steps: CRASH_STEPS },
        { label: 'copies 1', copies: 1, setupRuns: 1, steps: CRASH_STEPS },
        {
          label: 'copies 3, slot copied from the newest',
          copies: 3,
          setupRuns: 1,
          steps: ['after-slot', 'mid-apply', 'after-apply'],
        },
      ];
      for (const sc of scenarios) {
        for (const step of sc.steps) {
          test(`${sc.label}: ${step}`, async (t) => {
            const sut = await fresh(t);
            const server = 'Web01';
            const sim = new ServerSim(
              sut.store,
              server,
              SMALL_WEB01_DISKS,
              sc.copies,
              61 + sc.setupRuns,
              sut.listImages,
            );
            for (let i = 0; i < sc.setupRuns; i++) await sim.runDelta();
            const p = sim.prepare({ writes: 10, zeroRanges: 2 });
            const res = await runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), {
              crashAt: step,
            });
            assert.equal(res.signal, 'SIGKILL', `the writer must die at ${step}: ${res.stderr}`);
            if (step === 'after-renames' && sc.setupRuns === 3) {
              // Mid-rotation, exactly the Anvil! sequence: the oldest became _incomplete, the
              // others moved up, there is no _1 yet.
              assert.deepEqual(await sim.images(), [
                'Web01_Web01_0_2',
                'Web01_Web01_0_3',
                'Web01_Web01_0_incomplete',
                'Web01_Web01_1_2',
                'Web01_Web01_1_3',
                'Web01_Web01_1_incomplete',
              ]);
            }
            await sut.store.recover();
            // The delta was sealed before every step: the rotation is rolled forward.
            const m = await sut.store.manifest(server);
            assert.ok(m);
            assert.equal(m.generations[0]!.pointInTime, p.meta.pointInTime);
            sim.adopt(m.generations[0]!, p);
            await sim.check(`after recover from ${step}`);
            const report = await sut.store.verify(server);
            assert.equal(report.ok, true, JSON.stringify(report.problems));
            assert.deepEqual(await sut.store.recover(), [], 'recover is idempotent');
            await sim.runDelta({ writes: 7, zeroRanges: 1 });
            await sim.check(`the run after ${step}`);
          });
        }
      }
    });

    test('the definition is written once with optical drives ejected, then never touched', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'Web01', WEB01_DISKS, 2, 71, sut.listImages);
      const gen = await sim.runDelta();
      const path = sut.store.definitionPath('Web01');
      const xml = await readFile(path, 'utf8');
      const dom = DomainXml.parse(xml);
      assert.equal(dom.name, 'Web01');
      const disks = dom.disks();
      const cdrom = disks.find((d) => d.device === 'cdrom');
      assert.ok(cdrom, 'the cdrom drive stays, empty');
      assert.equal(cdrom.path, undefined, 'the cdrom is ejected');
      for (const d of WEB01_DISKS) {
        const want = await sut.store.imagePath('Web01', gen.id, d.name);
        const dd = disks.find((x) => x.path === want);
        assert.ok(dd, `disk ${d.name} points at its newest image ${want}`);
        assert.ok(want.endsWith(`Web01_${d.name}_1.raw`) || want.endsWith(`Web01_${d.name}_1`));
        assert.equal(dd.format, 'raw');
        assert.equal(dom.child(dd.element, 'backingStore'), undefined);
      }
      const edited = xml.replace('<memory unit="KiB">262144</memory>', '<memory unit="KiB">131072</memory>');
      assert.notEqual(edited, xml);
      await writeFile(path, edited);
      await sim.runDelta();
      await sim.runDelta();
      assert.equal(await readFile(path, 'utf8'), edited, 'an existing definition is never overwritten');
    });

    test('refusals leave every earlier generation intact', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'a_b', [{ name: 'c', size: 1024 * 1024 }], 2, 81, sut.listImages);
      await sim.runDelta();
      await sim.runDelta();
      const namesBefore = (await sut.listImages()).sort();
      const meta = (over: Partial<DeltaMeta>): DeltaMeta => ({
        ...sim.meta('x', 'full'),
        baseGenerationId: null,
        ...over,
      });

      for (const server of ['a/b', '..', '.hidden', '', 'x'.repeat(101)]) {
        await assert.rejects(
          sut.store.openDelta(meta({ server })),
          code('BAD_NAME'),
          `server ${JSON.stringify(server)}`,
        );
      }
      for (const disk of ['x/y', '..', '.d', '../../etc/passwd']) {
        await assert.rejects(
          sut.store.openDelta(meta({ server: 'ok', disks: [{ name: disk, size: CHUNK_SIZE }] })),
          code('BAD_NAME'),
        );
      }
      // a_b + c and a + b_c would both be named a_b_c_N.
      await assert.rejects(
        sut.store.openDelta(meta({ server: 'a', disks: [{ name: 'b_c', size: CHUNK_SIZE }] })),
        code('STORE_NAME_COLLISION'),
      );
      await assert.rejects(
        sut.store.openDelta(
          meta({
            server: 'q',
            disks: [
              { name: 'd', size: CHUNK_SIZE },
              { name: 'd', size: CHUNK_SIZE },
            ],
          }),
        ),
        code('STORE_NAME_COLLISION'),
      );
      // A collision with a server that only has a partial delta so far.
      const part = await sut.store.openDelta(
        meta({ server: 'm_n', disks: [{ name: 'o', size: CHUNK_SIZE }] }),
      );
      await part.close();
      await assert.rejects(
        sut.store.openDelta(meta({ server: 'm', disks: [{ name: 'n_o', size: CHUNK_SIZE }] })),
        code('STORE_NAME_COLLISION'),
      );
      // Not the newest generation, or "first run" when generations exist.
      await assert.rejects(
        sut.store.openDelta({ ...sim.meta('y', 'incremental'), baseGenerationId: sim.gens[1]!.id }),
        code('STORE_BASE_MISMATCH'),
      );
      await assert.rejects(
        sut.store.openDelta({ ...sim.meta('y', 'full'), baseGenerationId: null }),
        code('STORE_BASE_MISMATCH'),
      );
      await assert.rejects(
        sut.store.openDelta({ ...sim.meta('y', 'full'), copies: 0 }),
        code('STORE_BAD_COPIES'),
      );
      // One writer per server.
      const p = sim.prepare({ writes: 4 });
      const w1 = await sut.store.openDelta(p.meta);
      await assert.rejects(sut.store.openDelta(p.meta), code('STORE_LOCKED'));
      const sent = await sendExtents(w1, sim.alg, p.content, p.disks, p.extents, { checkpointEvery: 1 });
      // A summary that disagrees with what was staged.
      const wrong = structuredClone(sent.sent);
      wrong.disks.c!.dataBytes += CHUNK_SIZE;
      await assert.rejects(w1.seal(wrong), code('STORE_SUMMARY_MISMATCH'));
      await assert.rejects(
        w1.seal({ disks: { ...sent.sent.disks, ghost: { dataBytes: 0, zeroBytes: 0 } } }),
        code('STORE_SUMMARY_MISMATCH'),
      );
      await w1.close();
      await sim.check('after the refusals');
      assert.deepEqual(
        (await sut.listImages()).filter((n) => !n.startsWith('m_n_')).sort(),
        namesBefore,
        'no image appeared or vanished',
      );
      assert.equal((await sut.store.verify('a_b')).ok, true);
      // The refused seal kept the partial: it resumes and completes.
      const w2 = await sut.store.openDelta(p.meta);
      assert.ok(w2.resumed);
      await w2.seal(withStaged(summaryOf([], p.disks), w2.resumed.staged));
      sim.adopt(await w2.commit(), p);
      await sim.check('after resuming the refused delta');
    });

    test('verify finds a flipped byte and names the chunk', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'Web01', WEB01_DISKS, 3, 91, sut.listImages);
      await sim.runDelta();
      await sim.runDelta();
      const seen: [number, number][] = [];
      const clean = await sut.store.verify('Web01', {
        onProgress: (done, total) => seen.push([done, total]),
      });
      assert.equal(clean.ok, true, JSON.stringify(clean.problems));
      const total = 2 * WEB01_DISKS.reduce((n, d) => n + d.size, 0);
      assert.ok(seen.length > 1);
      assert.ok(
        seen.every(([, t]) => t === total),
        'the total is known from the start',
      );
      assert.deepEqual(seen.at(-1), [total, total]);
      assert.ok(
        seen.every(([d], i) => i === 0 || d >= seen[i - 1]![0]),
        'progress only moves forward',
      );
      await assert.rejects(sut.store.verify('Web01', { signal: AbortSignal.abort() }), code('INTERRUPTED'));
      assert.equal(clean.checkedBytes, 2 * WEB01_DISKS.reduce((n, d) => n + d.size, 0));
      const older = sim.gens[1]!;
      const path = await sut.store.imagePath('Web01', older.id, 'Web01_1');
      const at = 9 * CHUNK_SIZE + 1234;
      const fh = await open(path, 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] = b[0]! ^ 0x40;
      await fh.write(b, 0, 1, at);
      await fh.close();
      const report = await sut.store.verify('Web01');
      assert.equal(report.ok, false);
      assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
      const pr = report.problems[0]!;
      assert.equal(pr.code, 'STORE_DIGEST_MISMATCH');
      assert.equal(pr.generationId, older.id);
      assert.equal(pr.seq, 2);
      assert.equal(pr.disk, 'Web01_1');
      assert.deepEqual(pr.badChunks, [9]);
      assert.equal(
        (await sut.store.verify('Web01', { readImages: false })).ok,
        true,
        'structure alone is fine',
      );
      assert.equal(
        (await sut.store.verify('Web01', { generationId: sim.gens[0]!.id })).ok,
        true,
        'the newest generation is fine',
      );
    });

    test('disks that grow, shrink, appear and disappear between runs', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(
        sut.store,
        'elastic',
        [{ name: 'root', size: 2 * 1024 * 1024 + 5000 }],
        3,
        101,
        sut.listImages,
      );
      await sim.runDelta();
      // Grown (the old last chunk was short: its bytes and digest change without being sent).
      sim.disks = [{ name: 'root', size: 3 * 1024 * 1024 + 100 }];
      const p = sim.prepare({ writes: 2, zeroRanges: 0 });
      const grownOnly = p.extents.filter((e) => e.offset >= 2 * 1024 * 1024);
      assert.ok(grownOnly.length < p.extents.length);
      const w = await sut.store.openDelta(p.meta);
      await sendExtents(
        w,
        sim.alg,
        p.content,
        p.disks,
        p.extents.filter((e) => e.offset < 2 * 1024 * 1024 - CHUNK_SIZE || e.kind === 'data'),
      );
      await w.close();
      // The resumed writer is asked for digests: the short chunk must reflect the padding.
      const w2 = await sut.store.openDelta(p.meta);
      const extents = await resyncExtents(w2, sim.alg, p.content, p.disks);
      const r = await sendExtents(w2, sim.alg, p.content, p.disks, extents);
      await w2.seal(withStaged(r.sent, w2.resumed?.staged));
      sim.adopt(await w2.commit(), p);
      await sim.check('grown disk');
      // Grown again, sending only what the dirty bitmap would list: new data, not the boundary.
      sim.disks = [{ name: 'root', size: 4 * 1024 * 1024 + 7 }];
      const q = sim.prepare({ writes: 1, zeroRanges: 0 });
      const w3 = await sut.store.openDelta(q.meta);
      // The chunks whose bytes differ from the old image zero-padded to the new size.
      const old = sim.gens[0]!.content.get('root')!;
      const padded = Buffer.concat([old, Buffer.alloc(q.disks[0]!.size - old.length)]);
      const dirty = new Set<number>();
      for (let c = 0; c * CHUNK_SIZE < padded.length; c++) {
        const [s0, e0] = [c * CHUNK_SIZE, Math.min(padded.length, (c + 1) * CHUNK_SIZE)];
        if (!padded.subarray(s0, e0).equals(q.content.get('root')!.subarray(s0, e0))) dirty.add(c);
      }
      const boundary = Math.floor(old.length / CHUNK_SIZE);
      assert.ok(!dirty.has(boundary), 'the short last chunk only changed by padding');
      const sendable = extentsForChunks(q.content, q.disks, new Map([['root', dirty]]));
      const r3 = await sendExtents(w3, sim.alg, q.content, q.disks, sendable);
      await w3.seal(r3.sent);
      sim.adopt(await w3.commit(), q);
      await sim.check('grown again without resending the boundary chunk');
      // Shrunk, and a second disk appears (sent in full).
      sim.disks = [
        { name: 'root', size: 3 * 1024 * 1024 + 3 },
        { name: 'data', size: 1024 * 1024 },
      ];
      await sim.runDelta({ writes: 2 });
      await sim.check('shrunk, disk added');
      await sim.runDelta({ writes: 3 });
      await sim.check('recycled across a disk-set change');
      // The added disk goes away again.
      sim.disks = [{ name: 'root', size: 3 * 1024 * 1024 + 3 }];
      await sim.runDelta({ writes: 2 });
      await sim.check('disk removed');
      await sim.runDelta({ writes: 2 });
      await sim.runDelta({ writes: 2 });
      await sim.check('recycled after the disk was removed');
      assert.equal((await sut.store.verify('elastic')).ok, true);
    });

    test('changing copies between runs: growing keeps all, shrinking drops the oldest', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'Web01', WEB01_DISKS, 1, 111, sut.listImages);
      const plan: [number, number][] = [
        [1, 2],
        [3, 4],
        [2, 2],
        [4, 5],
        [1, 2],
      ];
      for (const [copies, runs] of plan) {
        sim.copies = copies;
        for (let i = 0; i < runs; i++) {
          const before = sim.gens.map((g) => g.id);
          const gen = await sim.runDelta({ writes: 5, zeroRanges: 1 });
          assert.deepEqual(
            sim.gens.map((g) => g.id),
            [gen.id, ...before].slice(0, copies),
          );
          await sim.check(`copies ${copies}, run ${i + 1}`);
        }
        const m = await sut.store.manifest('Web01');
        assert.equal(m?.copies, copies);
      }
      assert.equal((await sut.store.verify('Web01')).ok, true);
    });

    test('recovery bookkeeping lives in the manifest and survives commits', async (t) => {
      const sut = await fresh(t);
      const sim = new ServerSim(sut.store, 'book', disksFor('book'), 2, 121, sut.listImages);
      const g1 = await sim.runDelta();
      await sut.store.recordTest('book', g1.id, {
        at: new Date().toISOString(),
        kind: 'drill',
        result: 'pass',
        seconds: 4.2,
      });
      await sut.store.setBootPriority('book', 10);
      await sim.runDelta();
      let m = await sut.store.manifest('book');
      assert.equal(m?.bootPriority, 10);
      assert.equal(m?.generations[1]?.tests[0]?.seconds, 4.2);
      assert.deepEqual(m?.generations[0]?.tests, []);
      await assert.rejects(
        sut.store.recordTest('book', 'no-such-generation', m!.generations[1]!.tests[0]!),
        code('STORE_GENERATION_NOT_FOUND'),
      );
      await assert.rejects(sut.store.setBootPriority('nobody', 1), code('STORE_SERVER_NOT_FOUND'));
      await sut.store.setActiveAtDr('book', {
        since: new Date().toISOString(),
        generationId: g1.id,
        force: false,
      });
      await assert.rejects(sut.store.openDelta(sim.meta('z', 'incremental')), code('STORE_ACTIVE_AT_DR'));
      await sut.store.setActiveAtDr('book', null);
      m = await sut.store.manifest('book');
      assert.equal(m?.activeAtDr, undefined);
      await sim.runDelta();
      await sim.check('after clearing the activation');
      await assert.rejects(
        sut.store.imagePath('book', 'missing', 'book_0'),
        code('STORE_GENERATION_NOT_FOUND'),
      );
      await assert.rejects(
        sut.store.imagePath('book', sim.gens[0]!.id, 'nodisk'),
        code('STORE_DISK_NOT_FOUND'),
      );
      await assert.rejects(
        sut.store.readDigests('book', sim.gens[0]!.id, 'book_0', 0, 10_000),
        code('STORE_BAD_RANGE'),
      );
      assert.equal(await sut.store.manifest('nobody'), null);
    });
  });
}
