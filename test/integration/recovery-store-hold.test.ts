/**
 * Store.holdServer, the additive contract change recovery relies on (a drill or restore keeps a
 * generation open for long; no commit may recycle it meanwhile), on a real filesystem store:
 * writers are refused while it is held and proceed after; it waits for a writer that holds the
 * server; it completes an interrupted commit first, except while the server runs at the DR site.
 * Also the boot order activation takes from the stores' priorities (a dry run, no guest needed).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { chunkDigests } from '../../src/core/digest.ts';
import { HavenError } from '../../src/core/errors.ts';
import type { ActivationReport } from '../../src/recovery/index.ts';
import { CHUNK_SIZE, createFsStore, type DeltaMeta, type FsStore } from '../../src/store/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { snapshot } from './recovery-helpers.ts';

const SERVER = 'held';
const xml = (server: string) =>
  `<domain type='qemu'><name>${server}</name><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/${server}_0.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;

function meta(pit: string, base: string | null, server = SERVER): DeltaMeta {
  return {
    server,
    job: 'test',
    copies: 2,
    disks: [{ name: `${server}_0`, size: 4 * CHUNK_SIZE }],
    sourceDefinition: xml(server),
    pointInTime: pit,
    takenAt: new Date().toISOString(),
    baseGenerationId: base,
    mode: base ? 'incremental' : 'full',
  };
}

/** Opens a delta that rewrites chunk 0 with `fill` and seals it; commits unless told not to. */
async function delta(
  store: FsStore,
  pit: string,
  fill: number,
  commit = true,
  server = SERVER,
): Promise<void> {
  const base = (await store.manifest(server))?.generations[0]?.id ?? null;
  const w = await store.openDelta(meta(pit, base, server));
  const data = Buffer.alloc(CHUNK_SIZE, fill);
  await w.writeData(`${server}_0`, 0, data, chunkDigests(store.descriptor.digest, data, CHUNK_SIZE));
  if (!base) await w.writeZero(`${server}_0`, CHUNK_SIZE, 3 * CHUNK_SIZE);
  const sent = base
    ? { dataBytes: CHUNK_SIZE, zeroBytes: 0 }
    : { dataBytes: CHUNK_SIZE, zeroBytes: 3 * CHUNK_SIZE };
  await w.seal({ disks: { [`${server}_0`]: sent } });
  if (commit) await w.commit();
  else await w.close();
}

const newest = async (store: FsStore) => (await store.manifest(SERVER))?.generations[0]?.pointInTime;

function code(e: unknown): string {
  return e instanceof HavenError ? e.code : String(e);
}

test('holdServer keeps writers out, waits for one, and rolls forward only when the server is not active at DR', async (t) => {
  const dir = await testDir(t, 'haven-t-rec-hold');
  const store = await createFsStore(join(dir, 'store'));

  await assert.rejects(store.holdServer('nobody', 'drill'), (e) => code(e) === 'STORE_SERVER_NOT_FOUND');
  assert.equal(
    existsSync(join(dir, 'store', '.haven', 'servers', 'nobody')),
    false,
    'no trace of an unknown server',
  );

  await delta(store, 'pit-1', 1);
  const hold = await store.holdServer(SERVER, 'drill');
  await assert.rejects(
    store.openDelta(meta('pit-2', (await store.manifest(SERVER))!.generations[0]!.id)),
    (e) => {
      assert.equal(code(e), 'STORE_LOCKED');
      assert.match((e as Error).message, /\(drill\)/);
      return true;
    },
  );
  await assert.rejects(store.holdServer(SERVER, 'restore'), (e) => code(e) === 'STORE_LOCKED');
  await hold.release();
  await hold.release();
  await delta(store, 'pit-2', 2);
  assert.equal(await newest(store), 'pit-2');

  // A writer holds the server: the hold waits until it is done.
  const w = await store.openDelta(meta('pit-3', (await store.manifest(SERVER))!.generations[0]!.id));
  const waited = store.holdServer(SERVER, 'restore', { waitMs: 10_000 });
  setTimeout(() => void w.close(), 300);
  await (await waited).release();

  // A sealed delta whose commit did not happen is committed before a reader looks.
  await delta(store, 'pit-4', 4, false);
  assert.equal(await newest(store), 'pit-2');
  await (await store.holdServer(SERVER, 'drill')).release();
  assert.equal(await newest(store), 'pit-4');

  // …but not while the server runs at the DR site from these generations.
  await delta(store, 'pit-5', 5, false);
  await store.setActiveAtDr(SERVER, { since: new Date().toISOString(), generationId: 'g', force: false });
  await (await store.holdServer(SERVER, 'drill')).release();
  assert.equal(await newest(store), 'pit-4');
  await store.setActiveAtDr(SERVER, null);
  await (await store.holdServer(SERVER, 'drill')).release();
  assert.equal(await newest(store), 'pit-5');
});

test('activation starts servers in the order of their stored priorities, then names (dry run)', async (t) => {
  const dir = await testDir(t, 'haven-t-rec-order');
  const store = await createFsStore(join(dir, 'store'));
  const names = ['haven-t-rec-order-b', 'haven-t-rec-order-c', 'haven-t-rec-order-a'];
  for (const n of names) await delta(store, `${n}-1`, 1, true, n);
  const h = await havenEnv(dir);
  const p = await runHaven(h, ['priority', 'haven-t-rec-order-c', '5', '--store', store.location]);
  assert.equal(p.code, 0, p.stderr);
  const before = await snapshot(store.location);
  const plan = await havenJson<ActivationReport>(h, [
    'activate',
    '--all',
    '--dry-run',
    '--store',
    store.location,
  ]);
  assert.deepEqual(
    plan.servers.map((s) => [s.server, s.status]),
    [
      ['haven-t-rec-order-c', 'planned'],
      ['haven-t-rec-order-a', 'planned'],
      ['haven-t-rec-order-b', 'planned'],
    ],
  );
  assert.deepEqual(await snapshot(store.location), before, 'a dry run changes nothing');
  for (const bad of [
    ['activate', '--all', 'haven-t-rec-order-a', '--store', store.location],
    ['activate', '--store', store.location],
    ['activate', '--all', '--name', 'x', '--store', store.location],
    ['priority', 'haven-t-rec-order-a', 'soon', '--store', store.location],
  ]) {
    const r = await runHaven(h, bad);
    assert.equal(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
  }
});
