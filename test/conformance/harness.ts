/**
 * The harness of the store conformance suite (store-conformance.ts runs the contract, contract/*
 * states it): what a store's test file hands the suite (StoreUnderTest), a simulated protected
 * server whose expected bytes come from an independent model (ServerSim, model.ts), and a writer
 * in a child process for the crash tests (runChild, delta-child.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chunkDigests } from '../../src/core/digest.ts';
import { HavenError } from '../../src/core/errors.ts';
import { CRASH_ENV, type CrashStep, STOP_ENV } from '../../src/store/crash.ts';
import type { DeltaMeta, DeltaMode, DiskSpec, Generation, Store } from '../../src/store/types.ts';
import { CHUNK_SIZE } from '../../src/store/types.ts';
import type { ChildJob } from './delta-child.ts';
import {
  type Content,
  cloneContent,
  type Extent,
  extentsForChunks,
  fullExtents,
  initialContent,
  mutate,
  Rng,
  resyncExtents,
  sendExtents,
} from './model.ts';

export interface StoreUnderTest {
  store: Store;
  cleanup(): Promise<void>;
  /** Names of the images present, without suffix (`Web01_Web01_0_1`). */
  listImages(): Promise<string[]>;
  /** Flips one bit of the byte at `offset` of a stored image, behind the store's back (verify must notice). */
  damageImage(server: string, generationId: string, disk: string, offset: number): Promise<void>;
  /**
   * How a child process opens this same store: a module exporting `openStoreForTest(location)`.
   * Required by the crash-injection part of the contract (StoreCapabilities).
   */
  child?: {
    opener: string;
    location: string;
    /**
     * How long a child writer may run before it counts as stuck (default 60 s): an LVM store
     * under TCG spends 0.3–3 s in every lvm command.
     */
    timeoutMs?: number;
  };
  /**
   * Removes one image behind the store's back, and every image of a server (as an operator
   * would): for stores whose images are not files in the store's directory (lvm, rbd). Without
   * them, the files in `child.location` are removed.
   */
  removeImage?(server: string, generationId: string, disk: string): Promise<void>;
  removeServerImages?(server: string): Promise<void>;
  /** Bytes allocated to an image (sparse stores only); absent for stores that preallocate. */
  allocatedBytes?(path: string): Promise<number>;
  /** Bytes allocated to one of the store's own files, where images are not files (default allocatedBytes). */
  fileBytes?(path: string): Promise<number>;
}

export type StoreFactory = () => Promise<StoreUnderTest>;

/** A fresh store under test for one test, cleaned up after it. */
export type Fresh = (t: TestContext) => Promise<StoreUnderTest>;

/**
 * What a store can be put through beyond the contract every store meets. Every real store has
 * all of these; the in-memory test store lives in one process, so no second process can open it.
 */
export interface StoreCapabilities {
  /** A writer killed in a child process at each step (HAVEN_STORE_CRASH_AT) leaves a store recover() completes. */
  crashInjection: boolean;
  /**
   * A commit reads the generation its new slot starts from and repairs or refuses damage there
   * (store/common/commit/slot-check.ts). Every real store does; the in-memory test store keeps
   * its bytes in the process, where nothing rots, and stands in only for the protocol's peer.
   */
  slotCheck: boolean;
  /**
   * Every store the factory makes names its images in one shared namespace (LVM: the volume
   * group, where an LV's name is the seed's `<server>_<disk>_<seq>` and nothing of the store's),
   * so two of them cannot hold the same server at once: the tests that would (the crash part's
   * steps, all of server Web01) run one after another instead of four at a time.
   */
  sharedImageNames?: boolean;
}

/** Flips a bit of a byte in an image file (StoreUnderTest.damageImage for stores of files). */
export async function flipFileBit(path: string, offset: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = (b[0] ?? 0) ^ 0x40;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

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

export interface ServerSimOptions {
  store: Store;
  server: string;
  disks: DiskSpec[];
  /** The job's `copies` (tests change `sim.copies` between runs). */
  copies: number;
  /** Seeds the server's content: the same seed, the same bytes on every run of the suite. */
  seed: number;
  /** The store's image names, to check them against docs/design.md §4.1 (StoreUnderTest.listImages). */
  listImages?: () => Promise<string[]>;
}

/** One protected server as the sender sees it, and what the store must hold for it. */
export class ServerSim {
  gens: ModelGeneration[] = [];
  run = 0;
  readonly rng: Rng;
  readonly store: Store;
  readonly server: string;
  disks: DiskSpec[];
  copies: number;
  readonly listImages: (() => Promise<string[]>) | undefined;

  constructor(options: ServerSimOptions) {
    this.store = options.store;
    this.server = options.server;
    this.disks = options.disks;
    this.copies = options.copies;
    this.rng = new Rng(options.seed);
    this.listImages = options.listImages;
  }

  /** A server on the store under test, its image names checked with the store's hook. */
  static on(sut: StoreUnderTest, options: Omit<ServerSimOptions, 'store' | 'listImages'>): ServerSim {
    return new ServerSim({ ...options, store: sut.store, listImages: () => sut.listImages() });
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
    assert.ok(this.listImages, 'the store under test lists its images');
    return (await this.listImages()).filter((n) => n.startsWith(`${this.server}_`)).sort();
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
  options: {
    crashAt?: CrashStep;
    /** Stop the child at this step (STOP_ENV), run `whileStopped`, then let it go on. */
    stopAt?: { step: CrashStep; whileStopped: () => Promise<void> };
    checkpointAfter?: number;
    killAfter?: number;
  },
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  assert.ok(sut.child, 'crash tests need a store a child process can open');
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
  delete env[STOP_ENV];
  if (options.stopAt) env[STOP_ENV] = options.stopAt.step;
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
    const limitMs = sut.child?.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the delta child did not finish within ${limitMs / 1000} s: ${stderr}`));
    }, limitMs);
    child.on('error', reject);
    if (options.stopAt) {
      const { whileStopped } = options.stopAt;
      whenStopped(child.pid ?? 0)
        .then(async (stopped) => {
          if (!stopped) return;
          try {
            await whileStopped();
          } finally {
            child.kill('SIGCONT');
          }
        })
        .catch(reject);
    }
    child.on('close', (c, signal) => {
      clearTimeout(timer);
      resolve({ code: c, signal, stderr });
    });
  });
}

/** Resolves true once process `pid` is stopped (state T in /proc), false once it is gone. */
async function whenStopped(pid: number): Promise<boolean> {
  for (;;) {
    let stat: string;
    try {
      stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return false;
    }
    // The state follows the command name, which is in parentheses (proc(5)).
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'T') return true;
    if (state === 'Z' || state === 'X') return false;
    await new Promise((r) => setTimeout(r, 20));
  }
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
