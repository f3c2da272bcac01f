/**
 * Where a store's own plain files live (docs/design.md §4.4, docs/store-format.md): the descriptor,
 * definitions, and under `.haven/` the per-server manifests, journals, digest files, delta records
 * and locks. Every store kind keeps these as files in a directory: a filesystem store in its own
 * root, beside the images; a block-device store (LVM, RBD) in a metadata directory on the DR host.
 * Images are not here: they are the store kind's own (fs/layout.ts for files).
 *
 * Every path built from a name passes through `under()`, which refuses anything that would leave
 * the root (docs/design.md §4.3), on top of core/names.ts having refused unsafe names already.
 */
import { join, resolve } from 'node:path';
import { checkName } from '../../core/names.ts';
import { checkId, under } from './names.ts';

export const DESCRIPTOR_FILE = 'haven-store.json';

export class MetadataLayout {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get descriptor(): string {
    return join(this.root, DESCRIPTOR_FILE);
  }
  get havenDir(): string {
    return join(this.root, '.haven');
  }
  get serversDir(): string {
    return join(this.havenDir, 'servers');
  }
  get locksDir(): string {
    return join(this.havenDir, 'locks');
  }
  get definitionsDir(): string {
    return join(this.root, 'definitions');
  }
  /** Store-wide lock, held briefly while a new delta checks for name collisions. */
  get storeLock(): string {
    return join(this.locksDir, '.store.lock');
  }

  serverDir(server: string): string {
    return under(this.serversDir, checkName('server', server));
  }
  manifest(server: string): string {
    return join(this.serverDir(server), 'manifest.json');
  }
  /** The manifest's second copy (issue 13.7): what readers use when `manifest.json` is damaged. */
  manifestCopy(server: string): string {
    return join(this.serverDir(server), 'manifest.copy.json');
  }
  manifestLock(server: string): string {
    return join(this.serverDir(server), 'manifest.lock');
  }
  /** Chunks to send again from the source (resend.ts). */
  resend(server: string): string {
    return join(this.serverDir(server), 'resend.json');
  }
  journal(server: string): string {
    return join(this.serverDir(server), 'journal.json');
  }
  serverLock(server: string): string {
    return under(this.locksDir, `${checkName('server', server)}.lock`);
  }
  digestsDir(server: string, generationId: string): string {
    return under(this.serverDir(server), 'digests', checkId('generation', generationId));
  }
  digestsRoot(server: string): string {
    return join(this.serverDir(server), 'digests');
  }
  sums(server: string, generationId: string, disk: string): string {
    return under(this.digestsDir(server, generationId), `${checkName('disk', disk)}.sums`);
  }
  /** When the generation's disk last matched its digests (checked.ts). */
  checked(server: string, generationId: string, disk: string): string {
    return under(this.digestsDir(server, generationId), `${checkName('disk', disk)}.checked`);
  }
  deltasDir(server: string): string {
    return join(this.serverDir(server), 'deltas');
  }
  deltaDir(server: string, deltaId: string): string {
    return under(this.deltasDir(server), checkId('delta', deltaId));
  }
  deltaRecord(server: string, deltaId: string): string {
    return join(this.deltaDir(server, deltaId), 'delta.json');
  }
  definition(server: string): string {
    return under(this.definitionsDir, `${checkName('server', server)}.xml`);
  }
}
