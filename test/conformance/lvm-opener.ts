/** How a child process of the conformance suite opens an LVM store (its descriptor names its groups). */
import { openLvmStore } from '../../src/store/lvm/index.ts';
import type { Store } from '../../src/store/types.ts';

export function openStoreForTest(location: string): Promise<Store> {
  return openLvmStore(location);
}
