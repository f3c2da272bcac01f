/**
 * The `lvs` listing an LVM store keeps while it writes a server (docs/store-lvm.md, "Listings"):
 * taken once, then kept exact by the store's own changes, and trusted only as long as nothing
 * else can change the server's LVs:
 *
 * - **Under the server's write lock, held by this process.** Every Haven writer of a server's
 *   images (a delta's direct writes, its commit, a roll-forward) holds `.haven/locks/<server>.lock`
 *   (common/server-lock.ts), so no other Haven process renames, creates or removes that server's
 *   LVs meanwhile. The listing remembers the lock's token: a released and re-taken lock has
 *   another token, and the listing is dropped. Without the lock (readers, `haven images`) every
 *   question goes to `lvs`.
 * - **Only about the server's own LV names.** Other servers' LVs and the groups' free space may
 *   change under the lock (another server's run in the same group), so the room checks and the
 *   placement of a new LV read `vgs` and `lvs` afresh (images.ts).
 * - **Every change this process makes is applied in place or drops the listing.** A change counts
 *   process-wide: another LvmImages in this process (another open of the same store) changing LVs
 *   makes every other listing stale; a listing is trusted only while no lvm change is under way; a
 *   failed lvm command drops the listing.
 */
import { hostname } from 'node:os';
import { type LockInfo, liveHolder } from '../common/lock.ts';
import type { LvInfo } from './report.ts';

/** Changes to LVs this process started (any LvmImages), and how many are still running. */
const changes = { count: 0, running: 0 };

interface Entry {
  server: string;
  token: string;
  /** `changes.count` when the listing was last exact. */
  seen: number;
  lvs: LvInfo[];
}

export class LvListing {
  private entry: Entry | null = null;

  /** The listing of `server`'s lock token `token`, when it is still exact; else null. */
  get(server: string, token: string | null): readonly LvInfo[] | null {
    const e = this.entry;
    if (!e || token === null || changes.running > 0) return null;
    if (e.server !== server || e.token !== token || e.seen !== changes.count) return null;
    return e.lvs;
  }

  /** The moment a fresh `lvs` starts: what `put` needs to know nothing changed while it ran. */
  mark(): number {
    return changes.running > 0 ? -1 : changes.count;
  }

  /** Keeps a fresh listing taken from `mark()` on, unless an lvm change ran meanwhile. */
  put(server: string, token: string | null, lvs: LvInfo[], mark: number): void {
    if (token === null || mark < 0 || mark !== changes.count || changes.running > 0) return;
    this.entry = { server, token, seen: mark, lvs };
  }

  drop(): void {
    this.entry = null;
  }

  /**
   * Runs an lvm command that changes LVs, then applies `after` to the listing (null: drops it).
   * While it runs, no listing in this process is trusted; when it fails, this one is dropped.
   */
  async change<T>(run: () => Promise<T>, after: ((lvs: LvInfo[]) => LvInfo[]) | null): Promise<T> {
    const before = this.entry && this.entry.seen === changes.count ? this.entry : null;
    const mine = ++changes.count;
    changes.running++;
    let out: T;
    try {
      out = await run();
    } catch (e) {
      this.entry = null;
      throw e;
    } finally {
      changes.running--;
    }
    // Another change that started meanwhile (another LvmImages of this process) is not in `after`.
    const exact = before !== null && after !== null && changes.count === mine;
    this.entry = exact ? { ...before, seen: mine, lvs: after(before.lvs) } : null;
    return out;
  }
}

/** The listing after an LV was renamed in its group. */
export function renamed(lvs: readonly LvInfo[], vg: string, from: string, to: string): LvInfo[] {
  return lvs.map((lv) => (lv.vg === vg && lv.name === from ? { ...lv, name: to } : lv));
}

export function removed(lvs: readonly LvInfo[], vg: string, name: string): LvInfo[] {
  return lvs.filter((lv) => !(lv.vg === vg && lv.name === name));
}

export function added(lvs: readonly LvInfo[], lv: LvInfo): LvInfo[] {
  return [...removed(lvs, lv.vg, lv.name), lv];
}

export function retagged(
  lvs: readonly LvInfo[],
  vg: string,
  name: string,
  remove: readonly string[],
  add: readonly string[],
): LvInfo[] {
  return lvs.map((lv) =>
    lv.vg === vg && lv.name === name
      ? { ...lv, tags: [...lv.tags.filter((t) => !remove.includes(t) && !add.includes(t)), ...add] }
      : lv,
  );
}

/** The token of a lock's holder when it is this process (its pid on this host); else null. */
export function ownToken(holder: LockInfo | null, pid: number, host: string): string | null {
  return holder && holder.pid === pid && holder.host === host ? holder.token : null;
}

/** The token of the lock at `path` when this process holds it; else null. */
export async function heldToken(path: string): Promise<string | null> {
  return ownToken(await liveHolder(path), process.pid, hostname());
}
