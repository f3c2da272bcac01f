/**
 * `haven failback-receive`: the primary's side of one failback pass, serving the replication
 * stream on a byte stream (stdin/stdout, started by the DR site locally or through ssh) and
 * writing through the PrimarySink into the server's own images.
 */
import type { Duplex } from 'node:stream';
import { StreamReceiver } from '../../protocol/index.ts';
import { PrimarySink, type SinkOptions } from './sink.ts';

export async function serveFailback(stream: Duplex, o: SinkOptions): Promise<void> {
  await new StreamReceiver(stream, new PrimarySink(o), { log: o.log }).run();
}
