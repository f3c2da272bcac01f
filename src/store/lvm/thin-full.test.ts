import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError, ioError } from '../../core/errors.ts';
import type { LvInfo } from './report.ts';
import { mayBeFullPool, ThinVolumeWrites, thinPoolFull } from './thin-full.ts';

const errno = (code: string) => Object.assign(new Error(code), { code, syscall: 'write', errno: 1 });

test('ENOSPC and EIO, raw or as Haven errors, may be a full pool; other failures are not', () => {
  assert.equal(mayBeFullPool(errno('ENOSPC')), true);
  assert.equal(mayBeFullPool(errno('EIO')), true);
  assert.equal(mayBeFullPool(ioError(errno('ENOSPC'))), true);
  assert.equal(mayBeFullPool(ioError(errno('EIO'))), true);
  assert.equal(mayBeFullPool(ioError(errno('EACCES'))), false);
  assert.equal(mayBeFullPool(errno('EBADF')), false);
  assert.equal(mayBeFullPool(new Error('no code')), false);
});

test('a full pool is NO_SPACE naming the pool and what is full', () => {
  const lv = { vg: 'vg_dr', name: 'Web01_Web01_0_incomplete', pool: 'pool0' } as LvInfo;
  const pool = { name: 'pool0', dataPercent: 100, metadataPercent: 20, whenFull: '' } as LvInfo;
  const e = thinPoolFull(lv, pool, '/dev/vg_dr/x', errno('ENOSPC'));
  assert.equal(e.code, 'NO_SPACE');
  assert.match(e.message, /^thin pool vg_dr\/pool0 is full \(data\) writing \/dev\/vg_dr\/x$/);
  assert.match(e.hint ?? '', /lvextend -L \+SIZE vg_dr\/pool0\)/);
  assert.equal(e.details?.whenFull, 'queue');
  const m = thinPoolFull(lv, { ...pool, dataPercent: 50, metadataPercent: 100 }, '/dev/vg_dr/x', null);
  assert.match(m.message, /is full \(metadata\)/);
  assert.match(m.hint ?? '', /--poolmetadatasize \+SIZE/);
});

test('a thin volume’s failed write is explained; a good one is passed through', async () => {
  const written: number[] = [];
  const inner = {
    write: async (_buf: Buffer, position: number) => {
      if (position > 0) throw errno('ENOSPC');
      written.push(position);
    },
  };
  const explained = new HavenError('NO_SPACE', 'explained', { kind: 'resource' });
  const out = new ThinVolumeWrites(inner, async () => explained);
  await out.write(Buffer.alloc(1), 0);
  assert.deepEqual(written, [0]);
  await assert.rejects(out.write(Buffer.alloc(1), 512), (e) => e === explained);
});
