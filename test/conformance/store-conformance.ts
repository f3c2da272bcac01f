/**
 * The store conformance suite: what every Store implementation must do, written against the
 * Store / DeltaWriter interface only (docs/design.md §3: "one conformance test suite run against every
 * implementation"). A store's test file calls `storeConformance(name, factory)`; the factory
 * returns a fresh, empty store plus the few hooks the interface does not expose (harness.ts).
 *
 * The contract, one file per part (contract/): rotation and naming, receiving a delta, partial
 * deltas, refusals, and what the store keeps beside its images — the same for every store — plus
 * crash safety by killing a writer in a child process, which needs a store a second process can
 * open (StoreCapabilities): every real store does; the in-memory test store cannot.
 *
 * Every check compares against an independent model (model.ts): the exact bytes each generation
 * must hold, from a seeded generator.
 */
import { describe, type TestContext } from 'node:test';
import { bitrotContract } from './contract/bitrot.ts';
import { crashContract } from './contract/crash.ts';
import { damageContract } from './contract/damage.ts';
import { readersContract } from './contract/readers.ts';
import { recordsContract } from './contract/records.ts';
import { refusalsContract } from './contract/refusals.ts';
import { resumeContract } from './contract/resume.ts';
import { rotationContract } from './contract/rotation.ts';
import { sizeBombsContract } from './contract/size-bombs.ts';
import { writingContract } from './contract/writing.ts';
import type { StoreCapabilities, StoreFactory, StoreUnderTest } from './harness.ts';

const EVERY_CAPABILITY: StoreCapabilities = { crashInjection: true, slotCheck: true };

export function storeConformance(
  name: string,
  factory: StoreFactory,
  capabilities: StoreCapabilities = EVERY_CAPABILITY,
): void {
  async function fresh(t: TestContext): Promise<StoreUnderTest> {
    const sut = await factory();
    t.after(() => sut.cleanup());
    return sut;
  }
  const lacks = [
    ...(capabilities.crashInjection ? [] : ['no crash injection: one process only']),
    ...(capabilities.slotCheck ? [] : ['no slot check: nothing rots in memory']),
  ];
  const without = lacks.length ? ` (${lacks.join('; ')})` : '';

  describe(`store conformance: ${name}${without}`, () => {
    rotationContract(fresh);
    writingContract(fresh);
    resumeContract(fresh);
    refusalsContract(fresh);
    recordsContract(fresh);
    if (capabilities.slotCheck) bitrotContract(fresh);
    if (capabilities.crashInjection) {
      crashContract(fresh);
      readersContract(fresh);
      damageContract(fresh);
      sizeBombsContract(fresh);
    }
  });
}
