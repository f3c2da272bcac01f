/**
 * Replication sessions to a target: its transport (targets.ts) plus the stream handshake, opened
 * again for every reconnection a run needs (a broken connection is reopened to resume).
 */
import { readFile } from 'node:fs/promises';
import { ioError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { StreamSender } from '../protocol/index.ts';
import { openTarget } from '../transport/index.ts';
import { type EarlyConnection, type ResolvedTarget, transportOptions } from './targets.ts';

async function readToken(path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (e) {
    throw ioError(e as NodeJS.ErrnoException, `token file ${path}`);
  }
}

/**
 * Opens a new session to the target each time it is called. Closing the returned sender also
 * ends the transport (waits for the child process, closes the socket).
 */
export function senderFactory(
  t: ResolvedTarget,
  options: { log: Logger; receiveArgs?: string[]; early?: EarlyConnection },
): () => Promise<StreamSender> {
  return async () => {
    const conn = await (options.early?.take() ??
      openTarget(t.endpoint, transportOptions(t, options.log, options.receiveArgs)));
    try {
      const sender = await StreamSender.connect(conn.stream, {
        compression:
          t.compress > 0 ? { algorithm: 'zstd', level: t.compress } : { algorithm: 'none', level: 0 },
        token: t.tls?.tokenFile ? await readToken(t.tls.tokenFile) : undefined,
        log: options.log,
      });
      const close = sender.close.bind(sender);
      sender.close = async () => {
        await close();
        await conn.close();
      };
      return sender;
    } catch (e) {
      await conn.close();
      throw e;
    }
  };
}
