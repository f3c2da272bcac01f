/** An image open for reading, as the Store contract hands it to readers (types.ts ImageReader). */
import { storeError } from '../errors.ts';
import type { ImageReader } from '../types.ts';
import { isWithin } from './checks.ts';
import type { ReadableImage } from './images.ts';

/** Largest single ImageReader.read (memory is the caller's, but bounded here). */
const MAX_READ_BYTES = 64 * 1024 * 1024;

/** `image`, whose manifest size is `size`; STORE_SIZE_MISMATCH (and closed) when it differs. */
export async function imageReader(image: ReadableImage, size: number): Promise<ImageReader> {
  if (image.size !== size) {
    await image.close();
    throw storeError(
      'STORE_SIZE_MISMATCH',
      'integrity',
      `${image.path} is ${image.size} bytes, the manifest says ${size}`,
      {
        hint: 'Run `haven verify`; the image was changed outside Haven.',
      },
    );
  }
  return {
    size,
    async read(offset: number, length: number): Promise<Buffer> {
      if (!isWithin(offset, length, size) || length > MAX_READ_BYTES) {
        throw storeError(
          'STORE_BAD_RANGE',
          'usage',
          `read ${offset}+${length} is outside the image (${size} bytes) or over ${MAX_READ_BYTES} bytes`,
          { hint: 'Read inside the image, in pieces of at most 64 MiB.' },
        );
      }
      const buf = Buffer.allocUnsafe(length);
      await image.read(buf, length, offset);
      return buf;
    },
    close: () => image.close(),
  };
}
