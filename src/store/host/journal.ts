/**
 * Committing a rotation of host files under a journal (docs/store-format.md, "Host artefacts"):
 * the journal (with the finished manifest in it) is written first, then the deletes and renames
 * run in the journal's order, each followed by a directory fsync and a durable advance of its
 * `done` counter, then the manifest is written and the journal removed. A process that dies
 * anywhere leaves a journal that the next writer or reader completes from where it stopped; a
 * step is never repeated, since the counter says which ran (a rename's source name may be taken
 * again by a later rename, so "does the source exist" would not do).
 */
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { fsyncDir, io, isErrno, readJson, removeIfExists, writeFileDurable } from '../common/files.ts';
import type { HostLayout } from './layout.ts';
import { type HostJournal, manifestFile, parseHostJournal } from './records.ts';

export async function readHostJournal(layout: HostLayout, host: string): Promise<HostJournal | null> {
  const path = layout.journal(host);
  return readJson(path, parseHostJournal(path));
}

async function renameIfThere(from: string, to: string): Promise<void> {
  await io(from, async () => {
    try {
      await rename(from, to);
    } catch (e) {
      // Done before the counter advanced (a crash between the two): nothing left to do.
      if (!isErrno(e, 'ENOENT')) throw e;
    }
  });
}

/** Runs (or continues) the journal's steps, writes its manifest and removes it. */
export async function completeJournal(
  layout: HostLayout,
  host: string,
  journal: HostJournal,
  log: Logger,
): Promise<void> {
  const dir = layout.filesDir;
  const steps = journal.deletes.length + journal.renames.length;
  const path = layout.journal(host);
  for (let i = journal.done; i < steps; i++) {
    const del = journal.deletes[i];
    const move = journal.renames[i - journal.deletes.length];
    if (i < journal.deletes.length && del !== undefined) {
      await removeIfExists(join(dir, del));
    } else if (move) {
      await renameIfThere(join(dir, move[0]), join(dir, move[1]));
    }
    await fsyncDir(dir);
    journal.done = i + 1;
    await writeFileDurable(path, `${JSON.stringify(journal)}\n`);
  }
  await writeFileDurable(
    layout.manifest(host),
    `${JSON.stringify(manifestFile(journal.manifest), null, 2)}\n`,
  );
  await removeIfExists(path);
  await fsyncDir(layout.hostDir(host));
  log.debug('host rotation committed', { host, kind: journal.generation.kind, id: journal.generation.id });
}
