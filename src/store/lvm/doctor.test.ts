import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lvmChecks } from './doctor.ts';
import type { LvInfo } from './report.ts';

const MiB = 1024 * 1024;
const lv = (over: Partial<LvInfo>): LvInfo => ({
  name: 'x',
  vg: 'vg',
  size: 100 * MiB,
  tags: [],
  attr: '-wi-a-----',
  pool: '',
  dataPercent: null,
  chunkSize: 0,
  discards: '',
  metadataPercent: null,
  whenFull: '',
  ...over,
});

test('doctor: a missing group fails, a thick group with room passes, one nearly full warns', () => {
  const vgs = [
    { name: 'vg_ok', size: 1000 * MiB, free: 500 * MiB, extentSize: 4 * MiB },
    { name: 'vg_full', size: 1000 * MiB, free: 8 * MiB, extentSize: 4 * MiB },
  ];
  const [missing, ok, full] = lvmChecks([{ vg: 'vg_gone' }, { vg: 'vg_ok' }, { vg: 'vg_full' }], vgs, []);
  assert.equal(missing?.status, 'fail');
  assert.match(missing?.fix ?? '', /^vgcreate vg_gone /);
  assert.equal(ok?.status, 'ok');
  assert.equal(ok?.detail, '500 MiB free of 1000 MiB');
  assert.equal(full?.status, 'warn');
  assert.match(full?.fix ?? '', /^vgextend vg_full /);
  assert.ok([missing, ok, full].every((c) => c?.required));
});

test('doctor: a thin pool with room passes, a full one warns, a missing pool or a plain LV of its name fails', () => {
  const vgs = [{ name: 'vg', size: 1000 * MiB, free: 100 * MiB, extentSize: 4 * MiB }];
  const lvs = [
    lv({ name: 'pool0', attr: 'twi-aotz--', size: 800 * MiB, dataPercent: 25 }),
    lv({ name: 'pool1', attr: 'twi-aotz--', size: 800 * MiB, dataPercent: 95 }),
    lv({ name: 'plain' }),
  ];
  const [good, full, gone, plain] = lvmChecks(
    [
      { vg: 'vg', pool: 'pool0' },
      { vg: 'vg', pool: 'pool1' },
      { vg: 'vg', pool: 'nope' },
      { vg: 'vg', pool: 'plain' },
    ],
    vgs,
    lvs,
  );
  assert.equal(good?.status, 'ok');
  assert.match(good?.detail ?? '', /^thin pool: 600 MiB free of 800 MiB/);
  assert.equal(full?.status, 'warn');
  assert.match(full?.fix ?? '', /^lvextend -L \+SIZE vg\/pool1$/);
  assert.equal(gone?.status, 'fail');
  assert.equal(plain?.status, 'fail');
  assert.match(plain?.detail ?? '', /not a thin pool/);
});

test('doctor: a thin pool short of metadata space warns; what a full pool does with writes is said', () => {
  const vgs = [{ name: 'vg', size: 1000 * MiB, free: 100 * MiB, extentSize: 4 * MiB }];
  const pool = { attr: 'twi-aotz--', size: 800 * MiB, dataPercent: 25 };
  const lvs = [
    lv({ ...pool, name: 'pool0', metadataPercent: 95, whenFull: 'queue' }),
    lv({ ...pool, name: 'pool1', metadataPercent: 12.5, whenFull: 'error' }),
  ];
  const [meta, erroring] = lvmChecks(
    [
      { vg: 'vg', pool: 'pool0' },
      { vg: 'vg', pool: 'pool1' },
    ],
    vgs,
    lvs,
  );
  assert.equal(meta?.status, 'warn');
  assert.equal(meta?.fix, 'lvextend --poolmetadatasize +SIZE vg/pool0');
  assert.match(meta?.detail ?? '', /metadata 95%.*when full it holds writes up to 60 s, then fails them$/);
  assert.equal(erroring?.status, 'ok');
  assert.match(erroring?.detail ?? '', /metadata 12.5%.*when full it fails writes at once$/);
});
