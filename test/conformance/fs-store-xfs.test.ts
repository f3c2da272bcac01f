/** The store conformance suite on a loop-mounted xfs with reflinks (reflink-store.ts). */
import { reflinkStoreSuite } from './reflink-store.ts';

reflinkStoreSuite('xfs');
