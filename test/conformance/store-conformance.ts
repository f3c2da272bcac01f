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

export const EVERY_CAPABILITY: StoreCapabilities = { crashInjection: true, slotCheck: true };

/** The parts of the contract, in the order they run. */
const PARTS = {
  rotation: rotationContract,
  writing: writingContract,
  resume: resumeContract,
  refusals: refusalsContract,
  records: recordsContract,
  bitrot: bitrotContract,
  crash: crashContract,
  readers: readersContract,
  damage: damageContract,
  'size bombs': sizeBombsContract,
} as const;
export type ContractPart = keyof typeof PARTS;
const EVERY_PART = Object.keys(PARTS) as ContractPart[];
/** Parts that need a store a second process can open (crash injection). */
const CHILD_PARTS: readonly ContractPart[] = ['crash', 'readers', 'damage', 'size bombs'];

/**
 * Runs the contract against a store. A slow store may split it over several test files (each
 * within the test runner's per-file limit), every file naming its `parts`; together they must
 * name them all.
 */
export function storeConformance(
  name: string,
  factory: StoreFactory,
  capabilities: StoreCapabilities = EVERY_CAPABILITY,
  parts: readonly ContractPart[] = EVERY_PART,
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
  const which = parts.length === EVERY_PART.length ? '' : `, parts: ${parts.join(', ')}`;

  describe(`store conformance: ${name}${without}${which}`, () => {
    for (const part of EVERY_PART) {
      if (!parts.includes(part)) continue;
      if (part === 'bitrot' && !capabilities.slotCheck) continue;
      if (CHILD_PARTS.includes(part) && !capabilities.crashInjection) continue;
      PARTS[part](fresh, capabilities);
    }
  });
}
