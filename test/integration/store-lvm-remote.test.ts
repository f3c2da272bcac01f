/**
 * Issue 17, the replication must-shows on LVM, between two machines: a live guest on this host
 * (two disks and a cdrom) protected with `copies: 3` through `ssh://` to a real second machine —
 * the Debian test guest, whose kernel has device-mapper — into an LVM store there, once on a thin
 * pool (rotation by thin snapshot) and once on plain LVs (the staged-delta rotation). One full and
 * three incremental runs each; test/helpers/rounds.ts checks after every run that the LVs are
 * named exactly as the seed's, that every generation equals an independent model of the guest's
 * disks at its run (hashed inside the DR guest, 4 MiB at a time), that incremental runs send only
 * what changed, and that the definition is written once, its disks the LVs, its cdrom ejected.
 * Then `haven verify`, `haven images` and `haven restore` (of an older generation, to files) run
 * at the DR site.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createDebianGuest, type DebianGuest, installHaven } from '../fixtures/debian/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv } from '../helpers/haven.ts';
import { type Round, replicationRounds, type StoreView } from '../helpers/rounds.ts';

const PREFIX = 'haven-t-lvmr';
const CHUNK = 4 << 20;
const ROUNDS: Round[] = [
  [
    ['vda', 21, 60],
    ['vdb', 22, 20],
  ],
  [['vda', 23, 30]],
  [['vdb', 24, 10]],
  [
    ['vda', 25, 20],
    ['vdb', 26, 5],
  ],
];

/** The sha256 of every CHUNK of a local file, up to `size` bytes. */
async function chunkHashes(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) {
    out.push(
      createHash('sha256')
        .update(chunk as Buffer)
        .digest('hex'),
    );
  }
  return out;
}

/** The store's LVs in `vg` at the DR guest, seen through lvm and hashed there. */
function lvmView(dr: DebianGuest, store: string, vg: string): StoreView {
  const defPath = (server: string) => join(store, 'definitions', `${server}.xml`);
  return {
    // Every LV of the group carrying this store's tag (its id is in the store's descriptor).
    images: async () => {
      const { id } = JSON.parse((await dr.ssh(`cat ${store}/haven-store.json`)).stdout) as { id: string };
      const lvs = (await dr.ssh(`lvs --noheadings --separator=' ' -o lv_name,lv_tags ${vg}`)).stdout;
      return lvs
        .split('\n')
        .map((l) => l.trim().split(' '))
        .filter(([, tags]) => tags?.split(',').includes(`haven_store=${id}`))
        .map(([name]) => name!);
    },
    firstDifference: async (image, expected) => {
      const size = (await stat(expected)).size;
      const chunks = Math.ceil(size / CHUNK);
      const want = await chunkHashes(expected);
      const r = await dr.ssh(
        `for i in $(seq 0 ${chunks - 1}); do dd if=/dev/${vg}/${image} bs=${CHUNK} skip=$i count=1 status=none | sha256sum | cut -d' ' -f1; done`,
      );
      const got = r.stdout.trim().split('\n');
      for (let i = 0; i < chunks; i++) if (got[i] !== want[i]) return i * CHUNK;
      // The LV may be larger than the image (extents); its tagged size is checked by the store.
      return -1;
    },
    diskPath: (image) => join(store, 'volumes', image),
    readDefinition: async (server) => (await dr.ssh(`cat ${defPath(server)}`)).stdout,
    writeDefinition: async (server, text) => {
      await dr.ssh(`cat > ${defPath(server)}`, { input: text });
    },
  };
}

test('copies 3 into LVM at a second machine over ssh://: thin pool, then plain LVs', async (t) => {
  const dir = await testDir(t, PREFIX);
  const dr = await createDebianGuest(t, { prefix: PREFIX, boot: 'kernel', extraDisks: [{ sizeMiB: 1024 }] });
  await dr.ssh(
    'pvcreate -q /dev/vdb && vgcreate -q vg_dr /dev/vdb && lvcreate -q --type thin-pool -L 400m -n pool0 vg_dr',
  );
  await installHaven(dr);
  const h = await havenEnv(dir);

  for (const [kind, groups] of [
    ['thin', 'vg_dr/pool0'],
    ['thick', 'vg_dr'],
  ] as const) {
    await t.test(`${kind}: ${groups}`, async (st) => {
      const store = `/srv/haven-${kind}`;
      const guest = await createTestGuest(st, {
        prefix: `${PREFIX}-${kind}`,
        disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }],
        cdrom: 'iso',
      });
      const started = Date.now();
      await replicationRounds({
        h,
        guest,
        store: lvmView(dr, store, 'vg_dr'),
        dir,
        copies: 3,
        rounds: ROUNDS,
        protectArgs: [
          '--to',
          `${dr.url(store)}?lvm=${groups}`,
          // `=` keeps commander from reading ssh's own flags (-i, -o) as haven's.
          ...dr.sshOptions.map((o) => `--ssh-option=${o}`),
        ],
      });
      st.diagnostic(`${kind}: four runs in ${Math.round((Date.now() - started) / 1000)} s`);

      const verify = JSON.parse((await dr.ssh(`haven verify ${guest.name} --store ${store} --json`)).stdout);
      assert.equal(verify.ok, true);
      assert.equal(verify.checkedGenerations, 3);
      const listed = JSON.parse(
        (await dr.ssh(`haven images ${guest.name} --store ${store} --json`)).stdout,
      ) as Array<{
        server: string;
        generations: Array<{ seq: number; mode: string }>;
      }>;
      assert.deepEqual(
        listed[0]!.generations.map((g) => [g.seq, g.mode]),
        [
          [1, 'incremental'],
          [2, 'incremental'],
          [3, 'incremental'],
        ],
      );
      // A thin store's generations are thin volumes (snapshots); a thick store's plain LVs.
      const lvs = (await dr.ssh(`lvs --noheadings -o lv_name,segtype vg_dr`)).stdout;
      for (const line of lvs.split('\n').filter((l) => l.includes(guest.name))) {
        assert.match(line, kind === 'thin' ? /\bthin\b/ : /\blinear\b/, line);
      }

      // Restore at the DR site reads the LVs back (digests checked on the way): the files are the
      // generation's bytes, which the rounds above compared with the guest's disks.
      const to = `/var/tmp/haven-restore-${kind}`;
      const restored = JSON.parse(
        (
          await dr.ssh(
            `haven restore ${guest.name} --store ${store} --to ${to} --generation 2 --no-define --json`,
          )
        ).stdout,
      ) as { disks: Array<{ disk: string; path: string; size: number }> };
      assert.equal(restored.disks.length, 2, 'both disks, not the cdrom');
      for (const d of restored.disks) {
        const lv = `/dev/vg_dr/${guest.name}_${d.disk}_2`;
        const sums = await dr.ssh(
          `sha256sum < ${d.path} | cut -d' ' -f1; head -c ${d.size} ${lv} | sha256sum | cut -d' ' -f1; stat -c %s ${d.path}`,
        );
        const [file, volume, bytes] = sums.stdout.trim().split('\n');
        assert.equal(Number(bytes), d.size, `${d.path}: the disk's size`);
        assert.equal(file, volume, `${d.path} holds the bytes of ${lv}`);
      }
      await dr.ssh(`rm -rf ${to}`);
    });
  }
});
