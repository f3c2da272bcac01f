/** How a child process of the conformance suite opens a filesystem store. */
import { openFsStore } from '../../src/store/fs/index.ts';
import type { Store } from '../../src/store/types.ts';

export function openStoreForTest(location: string): Promise<Store> {
  return openFsStore(location);
}
