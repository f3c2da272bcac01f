/**
 * The store contract: Refusals (docs/design.md §4.3, §5): each is its own subtest, and none changes a stored generation.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeltaMeta } from '../../../src/store/types.ts';
import { CHUNK_SIZE } from '../../../src/store/types.ts';
import { code, type Fresh, ServerSim } from '../harness.ts';
import { sendExtents, summaryOf, withStaged } from '../model.ts';

export function refusalsContract(fresh: Fresh): void {
  test('refusals leave every earlier generation intact', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, {
      server: 'a_b',
      disks: [{ name: 'c', size: 1024 * 1024 }],
      copies: 2,
      seed: 81,
    });
    await sim.runDelta();
    await sim.runDelta();
    const namesBefore = (await sut.listImages()).sort();
    const meta = (over: Partial<DeltaMeta>): DeltaMeta => ({
      ...sim.meta('x', 'full'),
      baseGenerationId: null,
      ...over,
    });
    /** One refusal, as its own subtest: a failure names it. */
    const refused = (what: string, attempt: () => Promise<unknown>, want: string, message?: string) =>
      t.test(`${want}: ${what}`, async () => {
        await assert.rejects(attempt(), code(want), message);
      });

    for (const server of ['a/b', '..', '.hidden', '', 'x'.repeat(101)]) {
      await refused(
        `server ${JSON.stringify(server)}`,
        () => sut.store.openDelta(meta({ server })),
        'BAD_NAME',
        `server ${JSON.stringify(server)}`,
      );
    }
    for (const disk of ['x/y', '..', '.d', '../../etc/passwd']) {
      await refused(
        `disk ${JSON.stringify(disk)}`,
        () => sut.store.openDelta(meta({ server: 'ok', disks: [{ name: disk, size: CHUNK_SIZE }] })),
        'BAD_NAME',
      );
    }
    // a_b + c and a + b_c would both be named a_b_c_N.
    await refused(
      'server a disk b_c would be named like server a_b disk c',
      () => sut.store.openDelta(meta({ server: 'a', disks: [{ name: 'b_c', size: CHUNK_SIZE }] })),
      'STORE_NAME_COLLISION',
    );
    await refused(
      'one disk name twice in a server',
      () =>
        sut.store.openDelta(
          meta({
            server: 'q',
            disks: [
              { name: 'd', size: CHUNK_SIZE },
              { name: 'd', size: CHUNK_SIZE },
            ],
          }),
        ),
      'STORE_NAME_COLLISION',
    );
    await refused(
      'a collision with a server that only has a partial delta so far',
      async () => {
        const part = await sut.store.openDelta(
          meta({ server: 'm_n', disks: [{ name: 'o', size: CHUNK_SIZE }] }),
        );
        await part.close();
        return sut.store.openDelta(meta({ server: 'm', disks: [{ name: 'n_o', size: CHUNK_SIZE }] }));
      },
      'STORE_NAME_COLLISION',
    );
    // Not the newest generation, or "first run" when generations exist.
    await refused(
      'a delta to an older generation',
      () => sut.store.openDelta({ ...sim.meta('y', 'incremental'), baseGenerationId: sim.gens[1]!.id }),
      'STORE_BASE_MISMATCH',
    );
    await refused(
      'a first run when generations exist',
      () => sut.store.openDelta({ ...sim.meta('y', 'full'), baseGenerationId: null }),
      'STORE_BASE_MISMATCH',
    );
    await refused(
      'copies 0',
      () => sut.store.openDelta({ ...sim.meta('y', 'full'), copies: 0 }),
      'STORE_BAD_COPIES',
    );
    // One writer per server.
    const p = sim.prepare({ writes: 4 });
    const w1 = await sut.store.openDelta(p.meta);
    await refused('a second writer for the server', () => sut.store.openDelta(p.meta), 'STORE_LOCKED');
    const sent = await sendExtents(w1, sim.alg, p.content, p.disks, p.extents, { checkpointEvery: 1 });
    await refused(
      'a summary that disagrees with what was staged',
      () => {
        const wrong = structuredClone(sent.sent);
        wrong.disks.c!.dataBytes += CHUNK_SIZE;
        return w1.seal(wrong);
      },
      'STORE_SUMMARY_MISMATCH',
    );
    await refused(
      'a summary naming a disk the delta does not have',
      () => w1.seal({ disks: { ...sent.sent.disks, ghost: { dataBytes: 0, zeroBytes: 0 } } }),
      'STORE_SUMMARY_MISMATCH',
    );
    await w1.close();
    await sim.check('after the refusals');
    assert.deepEqual(
      (await sut.listImages()).filter((n) => !n.startsWith('m_n_')).sort(),
      namesBefore,
      'no image appeared or vanished',
    );
    assert.equal((await sut.store.verify('a_b')).ok, true);
    // The refused seal kept the partial: it resumes and completes.
    const w2 = await sut.store.openDelta(p.meta);
    assert.ok(w2.resumed);
    await w2.seal(withStaged(summaryOf([], p.disks), w2.resumed.staged));
    sim.adopt(await w2.commit(), p);
    await sim.check('after resuming the refused delta');
  });
}
