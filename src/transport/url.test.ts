import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HavenError } from '../core/errors.ts';
import { formatTarget, parseTarget } from './url.ts';

describe('parseTarget', () => {
  it('reads local paths, absolute and relative, and file URLs', () => {
    assert.deepEqual(parseTarget('/srv/haven'), { kind: 'local', path: '/srv/haven' });
    assert.deepEqual(parseTarget('/srv//haven/'), { kind: 'local', path: '/srv/haven' });
    assert.equal(parseTarget('store').kind, 'local');
    assert.equal((parseTarget('store') as { path: string }).path, `${process.cwd()}/store`);
    assert.deepEqual(parseTarget('file:///srv/haven'), { kind: 'local', path: '/srv/haven' });
  });

  it('reads ssh URLs with and without user and port', () => {
    assert.deepEqual(parseTarget('ssh://dr1/srv/haven'), { kind: 'ssh', host: 'dr1', path: '/srv/haven' });
    assert.deepEqual(parseTarget('ssh://root@dr1.example.com:2222/srv/haven'), {
      kind: 'ssh',
      user: 'root',
      host: 'dr1.example.com',
      port: 2222,
      path: '/srv/haven',
    });
    assert.deepEqual(parseTarget('ssh://[::1]:22/s'), { kind: 'ssh', host: '::1', port: 22, path: '/s' });
    assert.deepEqual(parseTarget('ssh://h/srv/with%20space'), {
      kind: 'ssh',
      host: 'h',
      path: '/srv/with space',
    });
  });

  it('reads tls URLs', () => {
    assert.deepEqual(parseTarget('tls://10.0.0.5:7070'), { kind: 'tls', host: '10.0.0.5', port: 7070 });
    assert.deepEqual(parseTarget('TLS://dr.example:7070/'), { kind: 'tls', host: 'dr.example', port: 7070 });
  });

  it('refuses what it cannot use, with TRANSPORT_BAD_URL', () => {
    for (const bad of [
      '',
      'ssh://dr1',
      'ssh://dr1/',
      'ssh://-oProxyCommand=evil/srv',
      'ssh://-x@dr1/srv',
      'ssh://user:pw@dr1/srv',
      'ssh://dr1:0/srv',
      'ssh://dr1:99999/srv',
      'ssh://dr1/srv?x=1',
      'ssh://dr1/srv?lvm=vg&x=1',
      'ssh://dr1/srv?lvm=',
      'ssh://dr1/srv?lvm=vg;rm',
      'ssh://dr1/srv#lvm',
      'tls://dr1:7070?lvm=vg',
      'ssh://dr1/srv?lvm=vg&rbd=rbd://a@ceph/p',
      'ssh://dr1/srv?rbd=ceph/p',
      'ssh://dr1/srv?rbd=rbd://a@ceph/p;rm',
      "ssh://dr1/srv?rbd=rbd://a@ceph/p'x",
      'tls://dr1:7070?rbd=rbd://a@ceph/p',
      'tls://dr1',
      'tls://dr1:7070/store',
      'tls://u@dr1:7070',
      'http://dr1/srv',
      'file://host/srv',
      'ssh:/dr1/srv'.replace(':/', '://x y/'),
      '/srv/ha\nven',
    ]) {
      assert.throws(
        () => parseTarget(bad),
        (e: HavenError) => e.code === 'TRANSPORT_BAD_URL' && e.kind === 'usage',
        JSON.stringify(bad),
      );
    }
  });

  it('reads an LVM store from the lvm query (docs/store-lvm.md)', () => {
    assert.deepEqual(parseTarget('ssh://root@dr1/srv/haven?lvm=vg_dr0,vg_dr1'), {
      kind: 'ssh',
      user: 'root',
      host: 'dr1',
      path: '/srv/haven',
      lvm: 'vg_dr0,vg_dr1',
    });
    assert.deepEqual(parseTarget('file:///srv/haven?lvm=vg_dr/pool0'), {
      kind: 'local',
      path: '/srv/haven',
      lvm: 'vg_dr/pool0',
    });
  });

  it('reads an rbd store from the rbd query, its own query percent-encoded (docs/store-rbd.md)', () => {
    assert.deepEqual(parseTarget('ssh://root@dr1/srv/haven?rbd=rbd://haven@ceph/dr'), {
      kind: 'ssh',
      user: 'root',
      host: 'dr1',
      path: '/srv/haven',
      rbd: 'rbd://haven@ceph/dr',
    });
    const location = 'rbd://haven@10.0.0.1,10.0.0.2/dr?keyring=/etc/haven/k';
    assert.deepEqual(parseTarget(`file:///srv/haven?rbd=${encodeURIComponent(location)}`), {
      kind: 'local',
      path: '/srv/haven',
      rbd: location,
    });
  });

  it('formats targets back', () => {
    for (const url of [
      'ssh://root@dr1:2222/srv/haven',
      'ssh://[::1]/s',
      'tls://dr1:7070',
      '/srv/haven',
      'ssh://dr1/srv/haven?lvm=vg_dr0,vg_dr1',
      'file:///srv/haven?lvm=vg_dr/pool0',
      `ssh://dr1/srv/haven?rbd=${encodeURIComponent('rbd://haven@ceph/dr?conf=/c/ceph.conf')}`,
    ]) {
      assert.equal(formatTarget(parseTarget(url)), url);
    }
  });
});
