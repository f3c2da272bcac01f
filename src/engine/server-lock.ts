/**
 * One run per server on this host. Two runs of the same server would share one libvirt domain,
 * whose single backup job each takes for a stale one of its own (acquireSource ends a job whose
 * socket lies in the run directory) and whose scratch files they would fight over.
 *
 * The lock is a listening unix socket in Linux's abstract namespace, named after the domain's
 * UUID: the kernel gives a name to one socket at a time and takes it back when the process ends,
 * however it ends (SIGKILL, OOM), so no stale lock is ever left to break and no file is written.
 * A second run that finds the name taken connects to it and is told who holds it: the run it
 * names in its error. Abstract names belong to a network namespace; runs in one namespace (the
 * host's, where Haven runs) see each other.
 */
import { connect, createServer, type Server } from 'node:net';
import type { Logger } from '../core/log.ts';
import { EngineError } from './errors.ts';

/** What the holder tells a run that finds the server taken. */
export interface LockHolder {
  pid: number;
  since: string;
  target: string;
  job?: string;
  runId?: number;
}

export interface ServerLock {
  release(): Promise<void>;
}

function lockName(uuid: string): string {
  return `\0haven/server/${uuid}`;
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Asks the holder who it is; undefined when it does not say within a second. */
function askHolder(path: string): Promise<LockHolder | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect(path);
    const timer = setTimeout(() => s.destroy(), 1000);
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as LockHolder);
      } catch {
        resolve(undefined);
      }
    });
  });
}

function busy(server: string, holder: LockHolder | undefined): EngineError {
  const who = holder
    ? `pid ${holder.pid}${holder.job ? `, job ${holder.job}` : ''}${holder.runId !== undefined ? ` run #${holder.runId}` : ''}, to ${holder.target}, since ${holder.since}`
    : 'a process that did not say who it is';
  return new EngineError('ENGINE_SERVER_BUSY', `${server} is being replicated by another run (${who})`, {
    kind: 'conflict',
    hint: 'One run per server at a time: wait for that run to finish (`haven runs` lists it) or stop it, then run again.',
    details: { server, holder: holder ?? null },
  });
}

/**
 * Takes the server for this run, or fails with ENGINE_SERVER_BUSY naming the run that has it
 * (a second run in this same process is refused too).
 */
export async function lockServer(
  server: { name: string; uuid: string },
  holder: Omit<LockHolder, 'pid' | 'since'>,
  log: Logger,
): Promise<ServerLock> {
  const me: LockHolder = { pid: process.pid, since: new Date().toISOString(), ...holder };
  const path = lockName(server.uuid);
  const listener = createServer((socket) => {
    socket.on('error', () => {});
    socket.end(JSON.stringify(me));
  });
  try {
    await listen(listener, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    throw busy(server.name, await askHolder(path));
  }
  // A lock must not keep the process alive on its own.
  listener.unref();
  log.debug('server taken for this run', { server: server.name });
  return {
    release: () => new Promise<void>((resolve) => listener.close(() => resolve())),
  };
}
