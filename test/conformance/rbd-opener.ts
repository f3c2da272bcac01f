/** How a child process of the conformance suite opens an rbd store (its descriptor names its pool). */
import { openRbdStore } from '../../src/store/rbd/index.ts';
import type { Store } from '../../src/store/types.ts';

export function openStoreForTest(location: string): Promise<Store> {
  return openRbdStore(location);
}
