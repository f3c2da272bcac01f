/**
 * `haven verify` for host artefacts: per generation the file exists with its manifest size and,
 * when files are read, its digest; each backup archive's rescue media are stored; no numbered
 * file outside the manifest and no `_incomplete` file without a live writer. Memory: one 4 MiB
 * buffer.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { createHasher } from '../../core/digest.ts';
import { isErrno } from '../common/files.ts';
import { liveHolder } from '../common/lock.ts';
import type { HostStore } from './host-store.ts';
import { parseHostFileName } from './layout.ts';
import type { HostGeneration, HostVerifyProblem, HostVerifyReport } from './types.ts';

const BUFFER_BYTES = 4 * 1024 * 1024;

export interface HostVerifyOptions {
  /** Re-read every file and compare its digest (default true). */
  readFiles?: boolean;
  /** Only this generation (id). */
  generationId?: string;
  onProgress?: (bytesDone: number) => void;
  signal?: AbortSignal;
}

/** Hex digest of a file, read in one bounded buffer. */
export async function fileDigest(
  store: Pick<HostStore, 'descriptor'>,
  path: string,
  onBytes?: (n: number) => void,
  signal?: AbortSignal,
): Promise<string> {
  const h = createHasher(store.descriptor.digest);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(BUFFER_BYTES);
    for (let pos = 0; ; ) {
      signal?.throwIfAborted();
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      onBytes?.(bytesRead);
    }
  } finally {
    await fh.close();
  }
  return h.digest().toString('hex');
}

/** Problems with one generation's file: missing, wrong size, or (reading it) a wrong digest. */
export async function checkHostFile(
  store: HostStore,
  host: string,
  g: HostGeneration,
  o: HostVerifyOptions = {},
): Promise<HostVerifyProblem[]> {
  const path = store.filePath(host, g);
  const file = store.layout.fileName(host, g.kind, g.seq);
  const where = { host, kind: g.kind, seq: g.seq, generationId: g.id, file };
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
    return [{ ...where, code: 'STORE_HOST_FILE_MISSING', message: `${file} is missing` }];
  }
  if (size !== g.size) {
    return [
      {
        ...where,
        code: 'STORE_HOST_SIZE_MISMATCH',
        message: `${file} has ${size} bytes, the manifest says ${g.size}`,
      },
    ];
  }
  if (o.readFiles === false) return [];
  const got = await fileDigest(store, path, o.onProgress, o.signal);
  if (got !== g.digest) {
    return [
      {
        ...where,
        code: 'STORE_HOST_DIGEST_MISMATCH',
        message: `${file} does not match its digest: the file is damaged`,
      },
    ];
  }
  return [];
}

export async function verifyHosts(
  store: HostStore,
  host?: string,
  o: HostVerifyOptions = {},
): Promise<HostVerifyReport> {
  const report: HostVerifyReport = {
    ok: true,
    checkedHosts: 0,
    checkedFiles: 0,
    checkedBytes: 0,
    problems: [],
  };
  const hosts = host ? [host] : await store.listHosts();
  for (const h of hosts) {
    const m = await store.manifest(h);
    if (!m) continue;
    report.checkedHosts++;
    for (const g of [...m.rescue, ...m.backup]) {
      if (o.generationId !== undefined && g.id !== o.generationId) continue;
      report.problems.push(...(await checkHostFile(store, h, g, o)));
      report.checkedFiles++;
      if (o.readFiles !== false) report.checkedBytes += g.size;
    }
    for (const b of m.backup) {
      if (m.rescue.some((r) => r.id === b.rescueId)) continue;
      report.problems.push({
        host: h,
        kind: 'backup',
        seq: b.seq,
        generationId: b.id,
        code: 'STORE_HOST_RESCUE_MISSING',
        message: `backup _${b.seq} names rescue media ${b.rescueId}, which the store no longer holds`,
      });
    }
    report.problems.push(...(await strayFiles(store, h, m.rescue.length, m.backup.length)));
  }
  report.ok = report.problems.length === 0;
  return report;
}

/** Numbered files no generation names, and incomplete files no live writer is writing. */
async function strayFiles(
  store: HostStore,
  host: string,
  rescues: number,
  backups: number,
): Promise<HostVerifyProblem[]> {
  const out: HostVerifyProblem[] = [];
  const writing = (await liveHolder(store.layout.writerLock(host))) !== null;
  for (const name of await readdir(store.layout.filesDir).catch(() => [] as string[])) {
    const f = parseHostFileName(name);
    if (!f || f.host !== host) continue;
    if (f.seq === 'incomplete') {
      if (!writing) {
        out.push({
          host,
          kind: f.kind,
          file: name,
          code: 'STORE_HOST_INCOMPLETE_LEFTOVER',
          message: `${name} was left by a transfer that did not finish`,
        });
      }
    } else if (f.seq > (f.kind === 'rescue' ? rescues : backups)) {
      out.push({
        host,
        kind: f.kind,
        file: name,
        code: 'STORE_HOST_FILE_ORPHAN',
        message: `${name} is not in the host's manifest`,
      });
    }
  }
  return out;
}
