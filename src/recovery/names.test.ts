import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../core/errors.ts';
import { bootWaves, orderForBoot } from './boot-order.ts';
import { parsePrimaryEndpoint } from './failback/link.ts';
import { primaryUri } from './primary.ts';
import { restoredDiskName } from './restore.ts';

test('boot order: priority, then name', () => {
  assert.deepEqual(
    orderForBoot([
      { server: 'web', priority: 100 },
      { server: 'db', priority: 10 },
      { server: 'app', priority: 100 },
      { server: 'dns', priority: 0 },
    ]),
    ['dns', 'db', 'app', 'web'],
  );
});

test('boot waves: one per priority, lower first, names sorted inside', () => {
  assert.deepEqual(
    bootWaves([
      { server: 'web', priority: 100 },
      { server: 'db2', priority: 10 },
      { server: 'app', priority: 100 },
      { server: 'db1', priority: 10 },
      { server: 'dns', priority: 0 },
    ]),
    [['dns'], ['db1', 'db2'], ['app', 'web']],
  );
  assert.deepEqual(bootWaves([]), []);
});

test('the primary as a libvirt URI or an ssh host', () => {
  assert.equal(primaryUri('qemu+ssh://root@pri/system'), 'qemu+ssh://root@pri/system');
  assert.equal(primaryUri('qemu:///system'), 'qemu:///system');
  assert.equal(primaryUri('pri.example.com'), 'qemu+ssh://pri.example.com/system');
  assert.equal(primaryUri('root@pri:2222'), 'qemu+ssh://root@pri:2222/system');
  assert.equal(primaryUri('ssh://admin@10.0.0.5'), 'qemu+ssh://admin@10.0.0.5/system');
  for (const bad of ['-oProxyCommand=x', 'a b', '', 'user@']) {
    assert.throws(
      () => primaryUri(bad),
      (e) => e instanceof HavenError && e.code === 'RECOVERY_BAD_PRIMARY',
      bad,
    );
  }
});

test('the failback target: local or an ssh address', () => {
  assert.deepEqual(parsePrimaryEndpoint('local'), { kind: 'local' });
  assert.deepEqual(parsePrimaryEndpoint('ssh://root@pri:2222'), {
    kind: 'ssh',
    host: 'pri',
    user: 'root',
    port: 2222,
  });
  assert.deepEqual(parsePrimaryEndpoint('pri.example.com'), { kind: 'ssh', host: 'pri.example.com' });
  assert.deepEqual(parsePrimaryEndpoint('admin@[fd00::1]'), { kind: 'ssh', host: 'fd00::1', user: 'admin' });
  for (const bad of ['-oProxyCommand=x', 'ssh://pri/some/path', 'ssh://pri:99999', 'a@b@c', '']) {
    assert.throws(
      () => parsePrimaryEndpoint(bad),
      (e) => e instanceof HavenError && e.kind === 'usage',
      bad,
    );
  }
});

test('restored disks take the new server name', () => {
  assert.equal(restoredDiskName('web01', 'web01_0', undefined), 'web01_0');
  assert.equal(restoredDiskName('web01', 'web01_0', 'web02'), 'web02_0');
  assert.equal(restoredDiskName('web01', 'web01-data', 'web02'), 'web02-data');
  assert.equal(restoredDiskName('web01', 'data', 'web02'), 'web02_data');
  assert.equal(restoredDiskName('web01', 'web01_0', 'web01'), 'web01_0');
});
