/**
 * One host file from the host to the target's store: the bytes a command on the host writes to
 * its stdout (`cat` of the ISO, or the archive out of ReaR's pipe) go into the replication stream
 * as FILE_DATA frames (docs/stream-protocol.md §4.7) in 1 MiB pieces, at the target's bandwidth,
 * never held whole; the digest travels with FILE_END and the target commits only a file whose
 * size and digest match. A command that fails, or a size that differs from what the host said,
 * aborts the file: the target throws it away and keeps its generations.
 */
import { TokenBucket } from '../engine/rate-limit.ts';
import type { StreamSender } from '../protocol/index.ts';
import type { HostFileMeta, HostGeneration } from '../store/host/types.ts';
import { hostError } from './errors.ts';
import type { ShellResult, StreamingCommand } from './shell.ts';

const PIECE = 1024 * 1024;

export interface SendFileOptions {
  /** Bytes per second to the target; 0 = unlimited. */
  bandwidth: number;
  /** The size the host reported, checked against what arrived (the ISO; the archive has none). */
  expectedSize?: number;
  onBytes?: (total: number) => void;
  signal?: AbortSignal;
  /** Turns a command that ended badly into the error to report. */
  failed: (r: ShellResult) => Promise<never>;
}

export async function sendHostFile(
  sender: StreamSender,
  meta: HostFileMeta,
  command: StreamingCommand,
  o: SendFileOptions,
): Promise<HostGeneration> {
  const bucket = new TokenBucket(o.bandwidth);
  const stop = () => command.kill();
  o.signal?.addEventListener('abort', stop, { once: true });
  try {
    await sender.openFile(meta);
    let piece = Buffer.allocUnsafe(PIECE);
    let fill = 0;
    const flush = async () => {
      if (fill === 0) return;
      await bucket.take(fill);
      await sender.sendFileData(piece.subarray(0, fill));
      // sendFileData resolves once the stream holds no more than its budget, but may still hold
      // this piece: the next one goes into a new buffer.
      piece = Buffer.allocUnsafe(PIECE);
      fill = 0;
      o.onBytes?.(sender.fileBytesSent);
    };
    for await (const chunk of command.stdout as AsyncIterable<Buffer>) {
      for (let at = 0; at < chunk.length; ) {
        const n = Math.min(PIECE - fill, chunk.length - at);
        chunk.copy(piece, fill, at, at + n);
        fill += n;
        at += n;
        if (fill === PIECE) await flush();
      }
    }
    await flush();
    const r = await command.done;
    o.signal?.throwIfAborted();
    if (r.code !== 0) return await o.failed(r);
    if (o.expectedSize !== undefined && sender.fileBytesSent !== o.expectedSize) {
      throw hostError(
        'HOST_TRANSFER_SHORT',
        'io',
        `${meta.host}: ${sender.fileBytesSent} bytes of the ${meta.kind} arrived, the host has ${o.expectedSize}`,
        { hint: 'The file changed or the connection broke while it was read; run the backup again.' },
      );
    }
    return await sender.endFile();
  } catch (e) {
    command.kill();
    // The target discards the incomplete file; a session that broke discards it by itself.
    await sender.abort(true).catch(() => {});
    throw e;
  } finally {
    o.signal?.removeEventListener('abort', stop);
  }
}
