/**
 * The receiver's side of host files (docs/stream-protocol.md §4.7): HOST_QUERY answers with the
 * host's manifest, FILE_OPEN starts `_incomplete` in the store's host area, FILE_DATA appends (in
 * order, checked), FILE_END checks size and digest and commits the generation. Only filesystem
 * stores hold host files. The host store is loaded on the first host frame: a receiver that only
 * replicates servers never loads it.
 */
import { HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import type { HostFileWriter, HostStore } from '../store/host/index.ts';
import type { HostFileMeta, HostGeneration, HostManifest } from '../store/host/types.ts';
import type { Store } from '../store/types.ts';

export class HostFileSession {
  private hosts: HostStore | undefined;
  private writer: HostFileWriter | null = null;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly readOnly: boolean,
  ) {}

  /** Whether this receiver's store can hold host files (WELCOME's features). */
  get available(): boolean {
    return this.store.kind === 'fs';
  }

  get open(): boolean {
    return this.writer !== null;
  }

  private async hostStore(): Promise<HostStore> {
    if (!this.available) {
      throw new HavenError('STORE_HOST_UNSUPPORTED', `a ${this.store.kind} store holds no host files`, {
        kind: 'refused',
        hint: 'Send host backups to a filesystem store (a directory).',
      });
    }
    if (!this.hosts) {
      const { HostStore } = await import('../store/host/index.ts');
      this.hosts = new HostStore(this.store.location, this.store.descriptor, { log: this.log });
    }
    return this.hosts;
  }

  async query(host: string): Promise<HostManifest | null> {
    checkName('host', host);
    const hosts = await this.hostStore();
    if (!this.readOnly) await hosts.recover(host);
    return hosts.manifest(host);
  }

  async begin(meta: HostFileMeta): Promise<string> {
    if (this.readOnly) {
      throw new HavenError('RECEIVE_READ_ONLY', 'this receiver answers a dry run and stores no file', {
        kind: 'refused',
        hint: 'Run the sender without --dry-run.',
      });
    }
    const hosts = await this.hostStore();
    this.writer = await hosts.beginFile(meta, this.log.child({ host: meta.host }));
    this.log.info('host file opened', { host: meta.host, kind: meta.kind, id: this.writer.id });
    return this.writer.id;
  }

  async data(offset: number, payload: Buffer): Promise<void> {
    await this.current().write(offset, payload);
  }

  async end(expected: { size: number; digest: string }): Promise<HostGeneration> {
    const w = this.current();
    this.writer = null;
    return w.finish(expected);
  }

  /** Throws an unfinished file away (ABORT, a lost connection, an error): nothing stored changes. */
  async discard(): Promise<void> {
    const w = this.writer;
    this.writer = null;
    if (!w) return;
    await w.discard().catch((e) => this.log.warn('could not discard the incomplete host file', { err: e }));
    this.log.info('host file discarded', { host: w.meta.host, kind: w.meta.kind, bytes: w.bytesWritten });
  }

  private current(): HostFileWriter {
    if (!this.writer) throw new HavenError('INTERNAL', 'no open host file', { kind: 'internal' });
    return this.writer;
  }
}
