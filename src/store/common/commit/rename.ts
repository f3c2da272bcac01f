/**
 * docs/design.md §4.2 step 2, the journal's phase `planned`: generations beyond a shrunk `copies` are
 * deleted, then the rename groups run in order (`_N` → `_incomplete`, `_k` → `_k+1`, all disks of
 * a generation together, oldest first so no name is ever taken twice), the names made durable and
 * the journal's counter advanced after each group. A group is redone only where its source name
 * still exists, which is unambiguous within a group.
 */
import type { Logger } from '../../../core/log.ts';
import { crashPoint } from '../../crash.ts';
import type { StoreContext } from '../context.ts';
import { writeJournal } from '../metadata.ts';
import { imageName } from '../names.ts';
import type { Journal } from '../records.ts';

export async function renameGenerations(ctx: StoreContext, journal: Journal, log: Logger): Promise<void> {
  const { images } = ctx;
  const server = journal.server;
  if (!journal.droppedDone) {
    for (const g of journal.dropped) for (const disk of g.disks) await images.remove(server, disk, g.seq);
    await images.syncNames();
    journal.droppedDone = true;
    await writeJournal(ctx, journal);
  }
  for (const [i, group] of journal.renames.entries()) {
    if (i < journal.renamedGroups) continue;
    for (const disk of group.disks) {
      const moved = await images.rename(server, disk, group.from, group.to);
      if (!moved && !(await images.exists(server, disk, group.to)))
        log.warn('image missing during rotation', { image: imageName(server, disk, group.from) });
    }
    await images.syncNames();
    journal.renamedGroups = i + 1;
    await writeJournal(ctx, journal);
    if (i === 0) crashPoint('mid-rename');
  }
  journal.phase = 'renamed';
  await writeJournal(ctx, journal);
  if (journal.kind === 'rotate') crashPoint('after-renames');
}
