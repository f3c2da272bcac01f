/**
 * Host artefacts in a filesystem store (docs/store-format.md, "Host artefacts"): receiving a
 * host's rescue media or backup archive as `_incomplete`, committing it as generation `_1` with
 * its digest checked, rotating under a journal, and what readers (`haven images`, `haven
 * verify`, host drills) need: manifests that are never seen half-rotated, a hold that keeps
 * files from rotating under a drill, and a record of drill results.
 *
 * The store descriptor (and so the digest algorithm) is the server store's: host files live in
 * the same store, beside the server images, in a directory of their own.
 */
import { open, readdir } from 'node:fs/promises';
import type { DigestAlgorithm } from '../../core/digest.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { checkName } from '../../core/names.ts';
import {
  ensureDir,
  isErrno,
  readJson,
  removeIfExists,
  TMP_PATTERN,
  writeFileDurable,
} from '../common/files.ts';
import { acquireLock, type HeldLock, type LockInfo, liveHolder } from '../common/lock.ts';
import { storeError } from '../errors.ts';
import type { TestRecord } from '../types.ts';
import { completeJournal, readHostJournal } from './journal.ts';
import { HostLayout, parseHostFileName } from './layout.ts';
import { hostReadme } from './readme.ts';
import { manifestFile, manifestView, parseHostManifest } from './records.ts';
import { planRotation } from './rotation.ts';
import type { HostFileKind, HostFileMeta, HostGeneration, HostManifest } from './types.ts';
import { HostFileWriter } from './writer.ts';

export interface HostStoreOptions {
  log?: Logger;
  /** How long a reader waits for a live rotation (renames: milliseconds) before STORE_BUSY. */
  busyWaitMs?: number;
}

export interface HostHold {
  readonly host: string;
  release(): Promise<void>;
}

function lockedError(host: string, holder: LockInfo, path: string) {
  return storeError(
    'STORE_HOST_LOCKED',
    'conflict',
    `host ${host} is held by ${holder.purpose ?? 'another process'} (pid ${holder.pid} on ${holder.host} since ${holder.startedAt})`,
    {
      hint: 'Wait for the other backup or drill of this host to finish, then run again.',
      details: { host, holder, lock: path },
    },
  );
}

export function hostNotFound(host: string, location: string): ReturnType<typeof storeError> {
  return storeError('STORE_HOST_NOT_FOUND', 'not-found', `${location} holds nothing of host ${host}`, {
    hint: 'List what the store holds with `haven images --store PATH`; a host appears after its first `haven host backup`.',
    details: { host },
  });
}

export class HostStore {
  readonly layout: HostLayout;
  readonly log: Logger;
  private readonly busyWaitMs: number;

  constructor(
    readonly location: string,
    readonly descriptor: { id: string; digest: DigestAlgorithm },
    o: HostStoreOptions = {},
  ) {
    this.layout = new HostLayout(location);
    this.log = o.log ?? silentLogger;
    this.busyWaitMs = o.busyWaitMs ?? 30_000;
  }

  /** Hosts that have a manifest, sorted. */
  async listHosts(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.layout.metaDir);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return [];
      throw e;
    }
    const out: string[] = [];
    for (const name of names.sort()) {
      try {
        checkName('host', name);
      } catch {
        continue;
      }
      if (await this.manifest(name)) out.push(name);
    }
    return out;
  }

  private async readManifest(host: string): Promise<HostManifest | null> {
    const path = this.layout.manifest(host);
    const m = await readJson(path, parseHostManifest(path));
    if (m && m.host !== host) {
      throw storeError('STORE_FILE_INVALID', 'integrity', `${path} belongs to host ${m.host}`, {
        hint: 'A manifest was moved between hosts; restore it from a copy or remove the host directory.',
      });
    }
    return m ? manifestView(m) : null;
  }

  /**
   * The host's manifest as readers may trust it: a rotation a dead process left is completed
   * first; a live one (renames only, milliseconds) is waited for.
   */
  async manifest(host: string): Promise<HostManifest | null> {
    checkName('host', host);
    const deadline = Date.now() + this.busyWaitMs;
    for (;;) {
      if (!(await readHostJournal(this.layout, host))) return this.readManifest(host);
      if (!(await liveHolder(this.layout.writerLock(host)))) {
        const lock = await this.lock(host, 'completing a rotation');
        try {
          const j = await readHostJournal(this.layout, host);
          if (j) await completeJournal(this.layout, host, j, this.log);
        } finally {
          await lock.release();
        }
        continue;
      }
      if (Date.now() >= deadline) {
        throw storeError('STORE_BUSY', 'conflict', `host ${host} is in the middle of a rotation`, {
          hint: 'Run again in a moment.',
          details: { host },
        });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async lock(host: string, purpose: string, waitMs = 0): Promise<HeldLock> {
    await ensureDir(this.layout.hostDir(host));
    const path = this.layout.writerLock(host);
    return acquireLock(path, {
      purpose,
      log: this.log,
      waitMs,
      locked: (holder) => lockedError(host, holder, path),
    });
  }

  /**
   * Starts receiving a file: takes the host's writer lock (STORE_HOST_LOCKED while a backup or
   * drill holds it), completes what an earlier writer left, and opens `_incomplete`.
   */
  async beginFile(meta: HostFileMeta, log: Logger = this.log): Promise<HostFileWriter> {
    checkMeta(meta);
    const lock = await this.lock(meta.host, `receiving ${meta.kind} of ${meta.host}`);
    try {
      await this.settle(meta.host);
      const current = await this.readManifest(meta.host);
      if (meta.kind === 'backup' && !current?.rescue.some((r) => r.id === meta.rescueId)) {
        throw storeError(
          'STORE_HOST_RESCUE_MISSING',
          'refused',
          `host ${meta.host}: the rescue media ${meta.rescueId} this archive belongs with are not in the store`,
          {
            hint: 'Run `haven host backup` again: it stores new rescue media first when the store lacks them.',
            details: { host: meta.host, rescueId: meta.rescueId },
          },
        );
      }
      await ensureDir(this.layout.filesDir);
      const path = this.layout.file(meta.host, meta.kind, 'incomplete');
      const fh = await open(path, 'w', 0o644);
      return new HostFileWriter(path, fh, meta, this.descriptor.digest, {
        commit: (g) => this.commit(meta, g),
        release: () => lock.release(),
        log: log.child({ host: meta.host, kind: meta.kind }),
      });
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /** Under the writer lock: completes a journal and removes leftovers of a dead writer. */
  private async settle(host: string): Promise<string[]> {
    const done: string[] = [];
    const j = await readHostJournal(this.layout, host);
    if (j) {
      await completeJournal(this.layout, host, j, this.log);
      done.push(`${host}: completed an interrupted rotation (${j.generation.kind})`);
    }
    for (const kind of ['rescue', 'backup'] as HostFileKind[]) {
      if (await removeIfExists(this.layout.file(host, kind, 'incomplete'))) {
        done.push(`${host}: removed an incomplete ${kind} file`);
      }
    }
    return done;
  }

  /** DESIGN §4.2 for whole files: journal, deletes and renames, manifest (journal.ts). */
  private async commit(meta: HostFileMeta, generation: HostGeneration): Promise<HostGeneration> {
    const current: HostManifest = (await this.readManifest(meta.host)) ?? {
      host: meta.host,
      copies: meta.copies,
      digest: this.descriptor.digest,
      rescue: [],
      backup: [],
    };
    const plan = planRotation(this.layout, current, generation, meta.copies);
    const journal = {
      format: 'haven-host-journal' as const,
      generation,
      manifest: manifestFile(plan.manifest),
      deletes: plan.deletes,
      renames: plan.renames,
      done: 0,
    };
    await writeFileDurable(this.layout.journal(meta.host), `${JSON.stringify(journal)}\n`);
    await completeJournal(this.layout, meta.host, journal, this.log);
    await this.writeReadme(plan.manifest);
    return { ...generation, seq: 1 };
  }

  private async writeReadme(m: HostManifest): Promise<void> {
    try {
      await writeFileDurable(this.layout.readme(m.host), hostReadme(m, this.layout));
    } catch (e) {
      // The manifest is what counts; the text is a courtesy for whoever opens the directory.
      this.log.warn('could not write the host description', { host: m.host, err: e });
    }
  }

  /**
   * Keeps the host's files from rotating while a long reader (a drill) uses them: the writer
   * lock, waited for up to `waitMs`. Completes an interrupted rotation first.
   */
  async hold(host: string, purpose: string, waitMs = 0): Promise<HostHold> {
    if (!(await this.manifest(host))) throw hostNotFound(host, this.location);
    const lock = await this.lock(host, purpose, waitMs);
    try {
      await this.settle(host);
    } catch (e) {
      await lock.release();
      throw e;
    }
    return { host, release: () => lock.release() };
  }

  /** Records a drill result against a generation ("tested at"), atomically in the manifest. */
  async recordTest(host: string, kind: HostFileKind, id: string, record: TestRecord): Promise<void> {
    await ensureDir(this.layout.hostDir(host));
    const path = this.layout.manifestLock(host);
    const lock = await acquireLock(path, {
      purpose: 'recording a test',
      log: this.log,
      waitMs: this.busyWaitMs,
      locked: (holder) => lockedError(host, holder, path),
    });
    try {
      const m = await this.readManifest(host);
      const g = (kind === 'rescue' ? m?.rescue : m?.backup)?.find((x) => x.id === id);
      if (!m || !g) throw hostNotFound(host, this.location);
      g.tests = [...g.tests, record].slice(-20);
      await writeFileDurable(this.layout.manifest(host), `${JSON.stringify(manifestFile(m), null, 2)}\n`);
    } finally {
      await lock.release();
    }
  }

  /**
   * Completes rotations dead writers left, removes their incomplete files and temporary files;
   * hosts a live writer holds are skipped. Returns what it did.
   */
  async recover(host?: string): Promise<string[]> {
    const hosts = host ? [host] : await this.hostDirs();
    const done: string[] = [];
    for (const h of hosts) {
      if (await liveHolder(this.layout.writerLock(h))) continue;
      const lock = await this.lock(h, 'recovering').catch(() => null);
      if (!lock) continue;
      try {
        done.push(...(await this.settle(h)));
      } finally {
        await lock.release();
      }
    }
    for (const name of await readdir(this.layout.filesDir).catch(() => [] as string[])) {
      if (TMP_PATTERN.test(name)) await removeIfExists(`${this.layout.filesDir}/${name}`);
    }
    return done;
  }

  private async hostDirs(): Promise<string[]> {
    const names = await readdir(this.layout.metaDir).catch(() => [] as string[]);
    const fromFiles = (await readdir(this.layout.filesDir).catch(() => [] as string[]))
      .map((n) => parseHostFileName(n)?.host)
      .filter((h): h is string => h !== undefined);
    return [...new Set([...names, ...fromFiles])].filter((n) => {
      try {
        checkName('host', n);
        return true;
      } catch {
        return false;
      }
    });
  }

  /** The path of a generation's file. */
  filePath(host: string, g: Pick<HostGeneration, 'kind' | 'seq'>): string {
    return this.layout.file(host, g.kind, g.seq);
  }
}

function checkMeta(meta: HostFileMeta): void {
  checkName('host', meta.host);
  const bad = (why: string) =>
    storeError('STORE_HOST_BAD_META', 'protocol', `host file of ${meta.host}: ${why}`, {
      hint: 'The sender described the file inconsistently; nothing was stored.',
      details: { host: meta.host, kind: meta.kind },
    });
  if (!Number.isInteger(meta.copies) || meta.copies < 1 || meta.copies > 100)
    throw bad('copies must be 1–100');
  if (meta.kind === 'rescue' && !meta.facts) throw bad('rescue media come with the host’s facts');
  if (meta.kind === 'backup' && !meta.rescueId) throw bad('a backup archive names its rescue media');
  if (Number.isNaN(Date.parse(meta.takenAt))) throw bad('takenAt is not a time');
}
