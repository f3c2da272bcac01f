/**
 * Images as raw files in the store's directory (docs/design.md §4.1: `<server>_<disk>_<seq>.raw`), for the
 * shared write path (common/images.ts). Renames and removals are made durable by fsyncing the
 * directory; copies are reflinks where the filesystem has them (copy.ts); holes are punched.
 */
import { open, rename, stat } from 'node:fs/promises';
import type { Logger } from '../../core/log.ts';
import { DirectFile } from '../common/direct-file.ts';
import { DirectReads } from '../common/direct-io.ts';
import { exists, fsyncDir, io, isErrno, listDir, readAllAt, removeIfExists } from '../common/files.ts';
import type {
  ImageVolumes,
  OpenWritableOptions,
  ReadableImage,
  RotationRoom,
  WritableImage,
} from '../common/images.ts';
import { imageSeqs } from '../common/names.ts';
import type { Seq } from '../common/rotation-plan.ts';
import { clonesImages, copyImage } from './copy.ts';
import { type FsLayout, IMAGE_SUFFIX } from './layout.ts';
import { checkRoom } from './space.ts';

export interface FsImageOptions {
  /** Write past the page cache (O_DIRECT) where the filesystem allows it (direct-io.ts). */
  directIo: boolean;
  /** Clone images where the filesystem can (`haven receive --no-reflink` turns it off). */
  reflinks: boolean;
}

export class FsImages implements ImageVolumes {
  constructor(
    private readonly layout: FsLayout,
    private readonly options: FsImageOptions,
  ) {}

  readonly blockDevices = false;

  path(server: string, disk: string, seq: Seq): string {
    return this.layout.image(server, disk, seq);
  }

  async allocated(server: string, disk: string, seq: Seq): Promise<number> {
    const s = await stat(this.path(server, disk, seq)).catch((e: unknown) => {
      if (isErrno(e, 'ENOENT')) return null;
      throw e;
    });
    return s ? s.blocks * 512 : 0;
  }

  exists(server: string, disk: string, seq: Seq): Promise<boolean> {
    return exists(this.path(server, disk, seq));
  }

  async rename(server: string, disk: string, from: Seq, to: Seq): Promise<boolean> {
    const source = this.path(server, disk, from);
    const target = this.path(server, disk, to);
    if (!(await exists(source))) return false;
    await io(source, () => rename(source, target));
    return true;
  }

  remove(server: string, disk: string, seq: Seq): Promise<boolean> {
    return removeIfExists(this.path(server, disk, seq));
  }

  syncNames(): Promise<void> {
    return fsyncDir(this.layout.root);
  }

  openWritable(server: string, disk: string, seq: Seq, options: OpenWritableOptions): Promise<WritableImage> {
    return DirectFile.open(this.path(server, disk, seq), { ...options, directIo: this.options.directIo });
  }

  async openRead(server: string, disk: string, seq: Seq): Promise<ReadableImage | null> {
    const path = this.path(server, disk, seq);
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return null;
      return io(path, () => Promise.reject(e));
    }
    const handle = fh;
    try {
      const { size } = await handle.stat();
      // The direct handle reopens the same inode (through /proc), not the name: a rotation may
      // have renamed another image to this name since.
      const direct = await DirectReads.open(`/proc/self/fd/${handle.fd}`, handle, this.options.directIo);
      return {
        path,
        size,
        read: (buf, length, position) =>
          io(path, async () => {
            let done = 0;
            while (done < length) {
              const n = await direct.read(buf.subarray(done), length - done, position + done);
              if (n === 0) break;
              done += n;
            }
            buf.fill(0, done, length);
          }),
        close: async () => {
          await direct.close();
          await handle.close();
        },
      };
    } catch (e) {
      await handle.close();
      return io(path, () => Promise.reject(e));
    }
  }

  async list(server: string, disk: string): Promise<Seq[]> {
    return imageSeqs(await listDir(this.layout.root), server, disk, IMAGE_SUFFIX);
  }

  async read(
    server: string,
    disk: string,
    seq: Seq,
    buf: Buffer,
    length: number,
    position: number,
  ): Promise<void> {
    const path = this.path(server, disk, seq);
    await io(path, async () => {
      const fh = await open(path, 'r');
      try {
        await readAllAt(fh, buf, length, position);
      } finally {
        await fh.close();
      }
    });
  }

  async copy(server: string, disk: string, from: Seq, to: Seq, log: Logger): Promise<string> {
    const target = this.path(server, disk, to);
    await removeIfExists(target);
    return copyImage(this.path(server, disk, from), target, {
      directIo: this.options.directIo,
      reflink: this.options.reflinks,
      log,
    });
  }

  /** With at least two copies, cloning is not turned off, and the filesystem clones (a probe). */
  async rotationClones(copies: number, log: Logger): Promise<boolean> {
    return copies >= 2 && this.options.reflinks && (await clonesImages(this.layout.root, log));
  }

  checkRoom(room: RotationRoom): Promise<void> {
    return checkRoom(this.layout, room);
  }
}
