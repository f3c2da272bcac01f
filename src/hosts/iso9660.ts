/**
 * Reading files out of an ISO 9660 image (ECMA-119) without mounting it: a drill boots the
 * stored rescue media's own kernel and initrd with the media's own kernel command line, read
 * from the ISO file where it lies in the store. Only what that needs: the primary volume
 * descriptor, directory records, and Rock Ridge names (SUSP "NM" entries, IEEE P1282), falling
 * back to the ISO 9660 name without its version (`KERNEL.;1` → `kernel`). Files are copied in
 * bounded pieces, never read whole.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { hostError } from './errors.ts';

const SECTOR = 2048;
const PIECE = 1024 * 1024;

export interface IsoEntry {
  name: string;
  directory: boolean;
  /** Byte offset of the file's data in the image. */
  offset: number;
  size: number;
}

function unreadable(path: string, why: string): Error {
  return hostError('HOST_MEDIA_UNREADABLE', 'integrity', `${path} is not a readable ISO 9660 image: ${why}`, {
    hint: 'The rescue media are damaged: run `haven verify` on the store, and take an older generation or a new backup.',
    details: { path },
  });
}

/** The Rock Ridge name in a record's System Use area, if any. */
function rockRidgeName(su: Buffer): string | undefined {
  let name = '';
  let found = false;
  for (let at = 0; at + 4 <= su.length; ) {
    const len = su[at + 2]!;
    if (len < 4 || at + len > su.length) break;
    if (su.toString('latin1', at, at + 2) === 'NM') {
      const flags = su[at + 4]!;
      // Flags 2 and 4 mark "." and ".."; the name then has no text of its own.
      if ((flags & 6) === 0) name += su.toString('utf8', at + 5, at + len);
      found = true;
    }
    at += len;
  }
  return found && name ? name : undefined;
}

function isoName(raw: Buffer): string {
  return raw.toString('latin1').replace(/;\d+$/, '').replace(/\.$/, '').toLowerCase();
}

export class IsoImage {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly size: number,
    private readonly root: IsoEntry,
  ) {}

  static async open(path: string): Promise<IsoImage> {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      for (let sector = 16; (sector + 1) * SECTOR <= size && sector < 64; sector++) {
        const vd = Buffer.alloc(SECTOR);
        await fh.read(vd, 0, SECTOR, sector * SECTOR);
        if (vd.toString('latin1', 1, 6) !== 'CD001') break;
        if (vd[0] === 255) break;
        if (vd[0] !== 1) continue;
        const rec = vd.subarray(156, 156 + 34);
        const root = {
          name: '',
          directory: true,
          offset: rec.readUInt32LE(2) * SECTOR,
          size: rec.readUInt32LE(10),
        };
        if (root.offset + root.size > size) throw unreadable(path, 'the root directory lies past its end');
        return new IsoImage(path, fh, size, root);
      }
      throw unreadable(path, 'no primary volume descriptor');
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  /** The entries of a directory. */
  async list(dir: IsoEntry): Promise<IsoEntry[]> {
    if (dir.size > 64 * 1024 * 1024) throw unreadable(this.path, 'a directory of more than 64 MiB');
    const data = Buffer.alloc(dir.size);
    await this.fh.read(data, 0, dir.size, dir.offset);
    const out: IsoEntry[] = [];
    for (let at = 0; at < data.length; ) {
      const len = data[at]!;
      if (len === 0) {
        // Records never cross a sector boundary: the rest of this sector is padding.
        at = (Math.floor(at / SECTOR) + 1) * SECTOR;
        continue;
      }
      if (len < 34 || at + len > data.length) throw unreadable(this.path, 'a malformed directory record');
      const rec = data.subarray(at, at + len);
      at += len;
      const nameLen = rec[32]!;
      const raw = rec.subarray(33, 33 + nameLen);
      if (nameLen === 1 && (raw[0] === 0 || raw[0] === 1)) continue;
      const su = rec.subarray(33 + nameLen + (nameLen % 2 === 0 ? 1 : 0));
      const entry = {
        name: rockRidgeName(su) ?? isoName(raw),
        directory: (rec[25]! & 2) !== 0,
        offset: rec.readUInt32LE(2) * SECTOR,
        size: rec.readUInt32LE(10),
      };
      if (entry.offset + entry.size > this.size)
        throw unreadable(this.path, `${entry.name} lies past the end of the image`);
      out.push(entry);
    }
    return out;
  }

  /** The entry at `path` (`isolinux/kernel`), matched case-insensitively; null when absent. */
  async find(path: string): Promise<IsoEntry | null> {
    let cur = this.root;
    for (const part of path.split('/').filter(Boolean)) {
      if (!cur.directory) return null;
      const next = (await this.list(cur)).find((e) => e.name.toLowerCase() === part.toLowerCase());
      if (!next) return null;
      cur = next;
    }
    return cur;
  }

  /** A small file's text (a boot loader configuration). */
  async readText(entry: IsoEntry, max = 1024 * 1024): Promise<string> {
    if (entry.size > max) throw unreadable(this.path, `${entry.name} is larger than ${max} bytes`);
    const b = Buffer.alloc(entry.size);
    await this.fh.read(b, 0, entry.size, entry.offset);
    return b.toString('utf8');
  }

  /** Copies a file out of the image to `dest`, in 1 MiB pieces. */
  async extract(entry: IsoEntry, dest: string): Promise<void> {
    const out = await open(dest, 'w', 0o644);
    try {
      const buf = Buffer.allocUnsafe(Math.min(PIECE, Math.max(1, entry.size)));
      for (let done = 0; done < entry.size; ) {
        const n = Math.min(buf.length, entry.size - done);
        const { bytesRead } = await this.fh.read(buf, 0, n, entry.offset + done);
        if (bytesRead !== n) throw unreadable(this.path, `${entry.name} is cut short`);
        await out.write(buf, 0, n, done);
        done += n;
      }
    } finally {
      await out.close();
    }
  }
}
