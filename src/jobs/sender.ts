/**
 * Replication sessions to a target: its transport (targets.ts) plus the stream handshake, opened
 * again for every reconnection a run needs (a broken connection is reopened to resume).
 */
import { readFile } from 'node:fs/promises';
import { asHavenError, ioError } from '../core/errors.ts';
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
    const token = t.tls?.tokenFile ? await readToken(t.tls.tokenFile) : undefined;
    const conn = await (options.early?.take() ??
      openTarget(t.endpoint, transportOptions(t, options.log, options.receiveArgs)));
    return StreamSender.over(conn, {
      compression:
        t.compress > 0 ? { algorithm: 'zstd', level: t.compress } : { algorithm: 'none', level: 0 },
      token,
      log: options.log,
    });
  };
}

/**
 * Sessions for a dry run: the receiver runs with `--dry-run` (it creates no store, mounts no
 * cache drive, writes no log file and completes no pending commit) and without staging options.
 * Resolves to null when the target holds no store yet: that receiver ends with exit code 4
 * (not-found, docs/exit-codes.md) and STORE_NOT_FOUND on stderr before any session.
 */
export function planSessionFactory(
  t: ResolvedTarget,
  options: { log: Logger },
): () => Promise<StreamSender | null> {
  const open = senderFactory(t, { log: options.log, receiveArgs: ['--dry-run'] });
  return async () => {
    try {
      return await open();
    } catch (e) {
      const err = asHavenError(e);
      const noStore =
        err.code === 'TRANSPORT_CHILD_FAILED' &&
        err.details?.exitCode === 4 &&
        /\[STORE_NOT_FOUND\]/.test(String(err.details.stderr ?? ''));
      if (!noStore) throw err;
      options.log.verbose('the target holds no store yet', { target: t.url });
      return null;
    }
  };
}
