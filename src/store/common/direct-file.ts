/**
 * A file (an image, or a delta's staged data) open for positioned writes: the ordinary handle,
 * which syncs and punches holes, and its O_DIRECT companion for the bulk of the data
 * (direct-io.ts). Also what a block device needs, which is why it is here and not in fs/.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import type { Logger } from '../../core/log.ts';
import { DirectWrites } from './direct-io.ts';
import { io, isErrno } from './files.ts';
import { type ByteRange, punchHoles } from './holes.ts';
import type { OpenWritableOptions, WritableImage } from './images.ts';

export class DirectFile implements WritableImage {
  private constructor(
    readonly path: string,
    /** What I/O errors of writes and syncs name: the path, or a label (`staged delta data`). */
    readonly what: string,
    readonly handle: FileHandle,
    readonly out: DirectWrites,
  ) {}

  /**
   * Opens `path` (`create`: `always` truncates an existing file, `if-missing` creates one only
   * where none exists), sets its size when `size` is given, and opens the O_DIRECT companion.
   */
  static async open(
    path: string,
    options: OpenWritableOptions & { directIo: boolean; what?: string },
  ): Promise<DirectFile> {
    const handle = await io(path, () => openHandle(path, options.create));
    try {
      const { size } = options;
      if (size !== undefined) await io(path, () => handle.truncate(size));
      const out = await io(path, () => DirectWrites.open(path, handle, options.directIo, options.log));
      return new DirectFile(path, options.what ?? path, handle, out);
    } catch (e) {
      await handle.close().catch(() => {});
      throw e;
    }
  }

  async size(): Promise<number> {
    return (await io(this.path, () => this.handle.stat())).size;
  }

  async resize(size: number): Promise<void> {
    await io(this.path, () => this.handle.truncate(size));
  }

  async punch(ranges: ByteRange[], log: Logger): Promise<void> {
    await punchHoles(this.handle, this.path, ranges, log);
  }

  datasync(): Promise<void> {
    return io(this.what, () => this.handle.datasync());
  }

  sync(): Promise<void> {
    return io(this.what, () => this.handle.sync());
  }

  async close(): Promise<void> {
    await this.out.close();
    await this.handle.close().catch(() => {});
  }
}

function openHandle(path: string, create: OpenWritableOptions['create']): Promise<FileHandle> {
  if (create === 'always') return open(path, 'w+');
  if (create === 'never') return open(path, 'r+');
  return open(path, 'r+').catch((e: unknown) => {
    if (isErrno(e, 'ENOENT')) return open(path, 'w+');
    throw e;
  });
}
