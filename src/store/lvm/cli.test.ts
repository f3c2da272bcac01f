import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../../core/errors.ts';
import { CommandError } from '../../core/exec.ts';
import { classify, sectors } from './cli.ts';

function failed(stderr: string, code = 5): CommandError {
  return new CommandError('lvm', ['lvcreate'], { code, stdout: '', stderr });
}

function codeOf(e: unknown): string | undefined {
  return e instanceof HavenError ? e.code : undefined;
}

test('lvm failures: no extents or a full thin pool are NO_SPACE, a missing group STORE_LVM_NO_VG, a taken name STORE_LVM_FOREIGN, else STORE_LVM_FAILED', () => {
  // lvm2 2.03.16's messages.
  assert.equal(
    codeOf(
      classify(failed('  Volume group "vg_dr" has insufficient free space (2 extents): 3 required.\n'), []),
    ),
    'NO_SPACE',
  );
  assert.equal(
    codeOf(
      classify(failed('  Insufficient free space: 3 extents needed, but only 2 available\n'), [], {
        vg: 'vg_dr',
      }),
    ),
    'NO_SPACE',
  );
  assert.equal(
    codeOf(
      classify(
        failed('  Cannot create new thin volume, free space in thin pool vg_dr/pool0 reached threshold.\n'),
        [],
      ),
    ),
    'NO_SPACE',
  );
  const missing = classify(
    failed('  Volume group "vg_gone" not found\n  Cannot process volume group vg_gone\n'),
    [],
  );
  assert.equal(codeOf(missing), 'STORE_LVM_NO_VG');
  assert.match((missing as Error).message, /vg_gone/);
  const other = classify(failed('  Logical volume vg_dr/x in use.\n'), ['lvremove', 'vg_dr/x']);
  assert.equal(codeOf(other), 'STORE_LVM_FAILED');
  assert.match((other as Error).message, /in use/);
  const taken = classify(failed('  Logical Volume "web01_d_1" already exists in volume group "vg_dr".\n'), [
    'lvrename',
    'vg_dr',
    'web01_d_incomplete',
    'web01_d_1',
  ]);
  assert.equal(codeOf(taken), 'STORE_LVM_FOREIGN');
  assert.match((taken as Error).message, /vg_dr\/web01_d_1/);
  const notCommand = new Error('boom');
  assert.equal(classify(notCommand, []), notCommand);
});

test('sizes given to lvm are whole sectors, rounded up (an image keeps its exact size in its tag)', () => {
  assert.equal(sectors(2102152), 2102272);
  assert.equal(sectors(1060864), 1060864);
  assert.equal(sectors(0), 512);
});
