/**
 * An image read through the broker (opened read-only there: a full pool can still be read). An
 * open image stays the same image when it is renamed (librbd holds it by its id), and a head
 * stays the generation it was when a rotation snapshots it (broker.py `op_reader_read`).
 *
 * A reader lives in one broker process. When that broker dies (broker.ts `REPEATABLE`), the
 * reader is opened again in the next one as it was, by the image's id and the snapshot it had
 * moved to, and the read is sent again: what it reads does not change.
 */
import type { ReadableImage } from '../common/images.ts';
import { type Broker, brokerDied, type Reply } from './broker.ts';

/** ESTALE: the broker answering has no such reader (an earlier one had it). */
const ESTALE = 116;

/** Pieces a read is split into: a broker answer is held whole in memory on both sides. */
const PIECE = 8 << 20;

const REOPENS = 2;

interface ReaderState {
  handle: number;
  imageId: string;
  head: boolean;
  snaps: string[];
  snap: string | null;
}

function readerGone(e: unknown): boolean {
  return brokerDied(e) || (e as { details?: Record<string, unknown> }).details?.errno === ESTALE;
}

export async function openBrokerReader(
  broker: Broker,
  image: string,
  path: string,
): Promise<ReadableImage | null> {
  const handle = broker.readerHandle();
  const r = await broker.call('reader_open', { name: image, handle });
  if (r.missing === true) return null;
  const state: ReaderState = {
    handle,
    imageId: String(r.imageId),
    head: r.head === true,
    snaps: (r.snaps as string[] | undefined) ?? [],
    snap: null,
  };
  return {
    path,
    size: Number(r.size),
    async read(buf: Buffer, length: number, position: number): Promise<void> {
      for (let done = 0; done < length; ) {
        const n = Math.min(length - done, PIECE);
        const data = await readPiece(broker, state, position + done, n);
        data.copy(buf, done, 0, n);
        done += n;
      }
    },
    close: async () => {
      await broker.call('reader_close', { handle });
    },
  };
}

async function readPiece(
  broker: Broker,
  state: ReaderState,
  offset: number,
  length: number,
): Promise<Buffer> {
  for (let attempt = 0; ; attempt++) {
    try {
      const { reply, data } = await broker.callData('reader_read', { handle: state.handle, offset, length });
      noteSnapshot(state, reply);
      return data;
    } catch (e) {
      if (attempt >= REOPENS || !readerGone(e)) throw e;
      const { handle, imageId, head, snaps, snap } = state;
      await broker.call('reader_reopen', { handle, imageId, head, snaps, snap });
    }
  }
}

/** A head reader moves to the snapshot a rotation took of it; a new broker must open that one. */
function noteSnapshot(state: ReaderState, reply: Reply): void {
  if (typeof reply.snap === 'string') state.snap = reply.snap;
}
