import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../../core/errors.ts';
import { findNameCollision, imageName, under } from '../common/names.ts';
import { FsLayout } from './layout.ts';

test('image names follow docs/design.md §4.1 exactly', () => {
  assert.equal(imageName('Web01', 'Web01_0', 1), 'Web01_Web01_0_1');
  assert.equal(imageName('Web01', 'Web01_1', 3), 'Web01_Web01_1_3');
  assert.equal(imageName('Web01', 'Web01_1', 'incomplete'), 'Web01_Web01_1_incomplete');
  const l = new FsLayout('/srv/dr');
  assert.equal(l.image('Web01', 'Web01_0', 2), '/srv/dr/Web01_Web01_0_2.raw');
  assert.equal(l.definition('Web01'), '/srv/dr/definitions/Web01.xml');
});

test('unsafe names are refused before any path is built', () => {
  const l = new FsLayout('/srv/dr');
  for (const bad of ['a/b', '..', '../x', '.hidden', '', 'a\0b']) {
    assert.throws(
      () => l.image(bad, 'd', 1),
      (e: unknown) => e instanceof HavenError && e.code === 'BAD_NAME',
    );
    assert.throws(
      () => l.image('s', bad, 1),
      (e: unknown) => e instanceof HavenError && e.code === 'BAD_NAME',
    );
  }
});

test('under() refuses paths that leave the root', () => {
  assert.equal(under('/srv/dr', 'a', 'b'), '/srv/dr/a/b');
  for (const parts of [['..'], ['a', '..', '..', 'etc'], ['/etc/passwd'], ['.']]) {
    assert.throws(
      () => under('/srv/dr', ...parts),
      (e: unknown) => e instanceof HavenError && e.code === 'STORE_PATH_ESCAPE',
    );
  }
});

test('ids read back from files are checked', () => {
  const l = new FsLayout('/srv/dr');
  assert.throws(
    () => l.digestsDir('s', '../../x'),
    (e: unknown) => e instanceof HavenError && e.code === 'STORE_BAD_ID',
  );
});

test('name collisions between servers are found', () => {
  const c = findNameCollision({ server: 'a', disks: ['b_c'] }, [{ server: 'a_b', disks: ['c'] }]);
  assert.deepEqual(c, { prefix: 'a_b_c', server: 'a', disk: 'b_c', otherServer: 'a_b', otherDisk: 'c' });
  assert.equal(findNameCollision({ server: 'a', disks: ['b'] }, [{ server: 'a_b', disks: ['c'] }]), null);
  // A server's own previous disk list is not a collision.
  assert.equal(findNameCollision({ server: 'a', disks: ['b'] }, [{ server: 'a', disks: ['b'] }]), null);
  // The same disk name twice in one server is.
  assert.equal(findNameCollision({ server: 'a', disks: ['b', 'b'] }, [])?.prefix, 'a_b');
});
