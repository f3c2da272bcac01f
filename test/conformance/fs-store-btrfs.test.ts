/** The store conformance suite on a loop-mounted btrfs with reflinks (reflink-store.ts). */
import { reflinkStoreSuite } from './reflink-store.ts';

reflinkStoreSuite('btrfs');
