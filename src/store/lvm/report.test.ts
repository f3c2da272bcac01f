import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../../core/errors.ts';
import {
  checkLvName,
  chooseGroup,
  discardBlock,
  formatGroups,
  type GroupSpec,
  type LvInfo,
  parseGroups,
  parseLvs,
  parseVgs,
  places,
  poolFree,
  poolIsFull,
  sizeTag,
  storeTag,
  taggedSize,
} from './report.ts';

function code(c: string) {
  return (e: unknown) => e instanceof HavenError && e.code === c;
}

/** What lvm2 2.03.16 (Debian 12) prints for `lvs --reportformat json --units b --nosuffix -o …`. */
const LVS = `  {
      "report": [
          {
              "lv": [
                  {"lv_name":"pool0", "vg_name":"vg_dr", "lv_size":"104857600", "lv_tags":"", "lv_attr":"twi-aotz--", "pool_lv":"", "data_percent":"12.50", "chunk_size":"65536", "discards":"passdown", "metadata_percent":"10.94", "lv_when_full":"queue"},
                  {"lv_name":"Web01_Web01_0_1", "vg_name":"vg_dr", "lv_size":"4194304", "lv_tags":"haven_size=2097152,haven_store=abc", "lv_attr":"Vwi-a-tz--", "pool_lv":"pool0", "data_percent":"50.00", "chunk_size":"0", "discards":"", "metadata_percent":"", "lv_when_full":""},
                  {"lv_name":"home", "vg_name":"vg_dr", "lv_size":"8388608", "lv_tags":"", "lv_attr":"-wi-a-----", "pool_lv":"", "data_percent":"", "chunk_size":"0", "discards":"", "metadata_percent":"", "lv_when_full":""}
              ]
          }
      ]
      ,
      "log": [
      ]
  }
`;

test('lvs JSON: names, groups, sizes in bytes, tags, attributes, pools, data percent', () => {
  const lvs = parseLvs(LVS);
  assert.equal(lvs.length, 3);
  const [pool, image, home] = lvs as [LvInfo, LvInfo, LvInfo];
  assert.deepEqual(lvs[1], {
    name: 'Web01_Web01_0_1',
    vg: 'vg_dr',
    size: 4194304,
    tags: ['haven_size=2097152', 'haven_store=abc'],
    attr: 'Vwi-a-tz--',
    pool: 'pool0',
    dataPercent: 50,
    chunkSize: 0,
    discards: '',
    metadataPercent: null,
    whenFull: '',
  });
  assert.equal(pool.chunkSize, 65536);
  assert.equal(pool.metadataPercent, 10.94);
  assert.equal(pool.whenFull, 'queue');
  assert.equal(poolIsFull(pool), false);
  assert.equal(poolIsFull({ ...pool, dataPercent: 100 }), true, 'no data space left');
  assert.equal(poolIsFull({ ...pool, metadataPercent: 100 }), true, 'no metadata space left');
  assert.equal(discardBlock(image, lvs), 65536, "a thin volume discards in its pool's blocks");
  assert.equal(discardBlock(home, lvs), 0, 'a thick LV cannot be zeroed by discarding');
  assert.equal(discardBlock(image, [{ ...pool, discards: 'ignore' }]), 0, 'a pool that ignores discards');
  assert.deepEqual(lvs[2]?.tags, []);
  assert.equal(lvs[2]?.dataPercent, null);
  assert.equal(taggedSize(image), 2097152);
  assert.equal(taggedSize(home), null);
  assert.equal(poolFree(pool), 91750400);
});

test('lvs JSON that is not a report, or sizes that are not bytes, are STORE_LVM_FAILED', () => {
  assert.throws(() => parseLvs('  WARNING: something\n'), code('STORE_LVM_FAILED'));
  assert.throws(() => parseLvs('{"nothing": 1}'), code('STORE_LVM_FAILED'));
  assert.throws(
    () => parseLvs('{"report":[{"lv":[{"lv_name":"a","vg_name":"v","lv_size":"4.00m"}]}]}'),
    code('STORE_LVM_FAILED'),
  );
  assert.deepEqual(parseLvs('{"report":[{"lv":[]}]}'), []);
});

test('vgs JSON: free space and extent size in bytes', () => {
  const vgs = parseVgs(
    '{"report":[{"vg":[{"vg_name":"vg_dr0","vg_size":"1073741824","vg_free":"1069547520","vg_extent_size":"4194304"},{"vg_name":"vg_dr1","vg_size":"536870912","vg_free":"0","vg_extent_size":"4194304"}]}]}',
  );
  assert.deepEqual(vgs, [
    { name: 'vg_dr0', size: 1073741824, free: 1069547520, extentSize: 4194304 },
    { name: 'vg_dr1', size: 536870912, free: 0, extentSize: 4194304 },
  ]);
});

test('group lists as the seed writes them, thin pools as VG/POOL, sorted, refused when LVM could not name them', () => {
  assert.deepEqual(parseGroups('dr01_vg1,dr01_vg0'), [{ vg: 'dr01_vg0' }, { vg: 'dr01_vg1' }]);
  assert.deepEqual(parseGroups('vg_dr/pool0'), [{ vg: 'vg_dr', pool: 'pool0' }]);
  assert.equal(formatGroups(parseGroups('b, a/p')), 'a/p,b');
  for (const bad of ['', 'vg,', '-vg', 'vg/pool/x', 'v g', 'vg,vg', 'vg/']) {
    assert.throws(() => parseGroups(bad), code('STORE_LVM_BAD_NAME'), bad);
  }
});

test('LV names: the seed names pass; too long, reserved parts and prefixes are STORE_LVM_BAD_NAME', () => {
  assert.equal(checkLvName('Web01_Web01_0_1'), 'Web01_Web01_0_1');
  assert.equal(checkLvName('Web01_Web01_1_incomplete'), 'Web01_Web01_1_incomplete');
  assert.equal(checkLvName('a'.repeat(127)), 'a'.repeat(127));
  assert.throws(() => checkLvName('a'.repeat(128)), code('STORE_LVM_BAD_NAME'));
  assert.throws(() => checkLvName('db_tdata_1'), code('STORE_LVM_BAD_NAME'));
  assert.throws(() => checkLvName('x_rimage_0_1'), code('STORE_LVM_BAD_NAME'));
  assert.throws(() => checkLvName('snapshot1_d_1'), code('STORE_LVM_BAD_NAME'));
  assert.throws(() => checkLvName('pvmove_d_1'), code('STORE_LVM_BAD_NAME'));
});

test('a new LV goes to the group with the most free space; ties alphabetically; none when nothing fits', () => {
  const g = (vg: string): GroupSpec => ({ vg });
  assert.equal(
    chooseGroup(
      [
        { group: g('b'), free: 10 },
        { group: g('a'), free: 20 },
      ],
      5,
    )?.vg,
    'a',
  );
  assert.equal(
    chooseGroup(
      [
        { group: g('c'), free: 20 },
        { group: g('b'), free: 20 },
      ],
      5,
    )?.vg,
    'b',
  );
  assert.equal(
    chooseGroup(
      [
        { group: g('a'), free: 4 },
        { group: g('b'), free: 6 },
      ],
      5,
    )?.vg,
    'b',
  );
  assert.equal(chooseGroup([{ group: g('a'), free: 4 }], 5), null);
  const thin = { group: { vg: 't', pool: 'p' }, free: 4 };
  assert.equal(chooseGroup([thin], 1 << 40), null, 'a thin pool without overcommit needs the room');
  assert.equal(chooseGroup([thin], 1 << 40, true)?.vg, 't', 'a thin volume maps blocks as written');
  assert.equal(chooseGroup([{ ...thin, free: 0 }], 1, true), null, 'a full pool takes nothing');
});

test('places: a thick group offers its free extents, a thin one its pool; a missing group or pool is STORE_LVM_NO_VG', () => {
  const lvs = parseLvs(LVS);
  const vgs = [{ name: 'vg_dr', size: 8000, free: 1000, extentSize: 4194304 }];
  assert.deepEqual(places([{ vg: 'vg_dr' }], vgs, lvs), [{ group: { vg: 'vg_dr' }, free: 1000 }]);
  assert.equal(places([{ vg: 'vg_dr', pool: 'pool0' }], vgs, lvs)[0]?.free, 91750400);
  assert.throws(() => places([{ vg: 'vg_x' }], vgs, lvs), code('STORE_LVM_NO_VG'));
  assert.throws(() => places([{ vg: 'vg_dr', pool: 'home' }], vgs, lvs), code('STORE_LVM_NO_VG'));
});

test('tags: the store tag and the exact size tag are what lvm accepts', () => {
  assert.match(storeTag('2f0c1d9e-8a4b-4c7e-9d2a-1b3c4d5e6f70'), /^[A-Za-z0-9_+.\-/=!:&#]+$/);
  assert.equal(sizeTag(1060864), 'haven_size=1060864');
});
