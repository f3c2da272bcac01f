/**
 * Walking a meta context over a range: BLOCK_STATUS in steps, with the server's answers stitched
 * into maximal runs of equal flags. proto.md allows a server to describe less than asked (the
 * walk continues where the answer stopped) or, in its final extent, more (clipped here to the
 * range), and to send consecutive descriptors with equal flags (merged here).
 */
import { protocolError, requestError } from './errors.ts';
import type { BlockStatusResult } from './transmission.ts';

/** What mapExtents needs: an NbdClient or an NbdPool. */
export interface BlockStatusSource {
  readonly size: number;
  readonly contexts: ReadonlyMap<string, number>;
  blockStatus(offset: number, length: number, o?: { reqOne?: boolean }): Promise<BlockStatusResult>;
}

export interface MappedExtent {
  offset: number;
  length: number;
  flags: number;
}

/** Default BLOCK_STATUS request length: large, so a sparse disk maps in few round trips. */
export const DEFAULT_MAP_STEP = 1 << 30;

export async function* mapExtents(
  c: BlockStatusSource,
  context: string,
  o: { offset?: number; length?: number; step?: number } = {},
): AsyncGenerator<MappedExtent> {
  if (!c.contexts.has(context)) {
    throw requestError(
      'NBD_UNKNOWN_CONTEXT',
      `meta context ${context} was not negotiated on this connection`,
      {
        context,
        negotiated: [...c.contexts.keys()],
      },
    );
  }
  const start = o.offset ?? 0;
  const end = start + (o.length ?? c.size - start);
  const step = o.step ?? DEFAULT_MAP_STEP;
  if (!Number.isSafeInteger(step) || step <= 0) {
    throw requestError('NBD_BAD_RANGE', `map step ${step} is not a positive whole number`);
  }
  let run: MappedExtent | undefined;
  let pos = start;
  while (pos < end) {
    const answer = await c.blockStatus(pos, Math.min(step, end - pos));
    const extents = answer.get(context) ?? [];
    const before = pos;
    for (const e of extents) {
      const length = Math.min(e.length, end - pos);
      if (length <= 0) break;
      if (run && run.flags === e.flags) run.length += length;
      else {
        if (run) yield run;
        run = { offset: pos, length, flags: e.flags };
      }
      pos += length;
    }
    if (pos === before) {
      // Transmission already rejects empty answers; this guards the loop against any other source.
      throw protocolError('NBD_BAD_REPLY', `block status at ${pos} described nothing for ${context}`);
    }
  }
  if (run) yield run;
}
