import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HavenError } from '../../core/errors.ts';
import { formatRbdLocation, parseRbdLocation } from './location.ts';

describe('rbd store locations (docs/store-rbd.md)', () => {
  it('a cluster name brings Ceph’s default configuration file and keyring', () => {
    assert.deepEqual(parseRbdLocation('rbd://haven@ceph/dr'), {
      pool: 'dr',
      user: 'haven',
      cluster: 'ceph',
      monitors: undefined,
      conf: '/etc/ceph/ceph.conf',
      keyring: '/etc/ceph/ceph.client.haven.keyring',
    });
    assert.equal(parseRbdLocation('rbd://ceph/dr').user, 'admin');
    assert.equal(parseRbdLocation('rbd://haven@site2/dr').conf, '/etc/ceph/site2.conf');
  });

  it('monitors instead of a configuration file need a keyring', () => {
    const l = parseRbdLocation('rbd://haven@10.0.0.1:6789,10.0.0.2,[::1]:3300/dr?keyring=/etc/haven/k');
    assert.deepEqual(l.monitors, ['10.0.0.1:6789', '10.0.0.2', '[::1]:3300']);
    assert.equal(l.keyring, '/etc/haven/k');
    assert.equal(l.conf, undefined);
  });

  it('formats back to what it parses from', () => {
    for (const spec of [
      'rbd://haven@ceph/dr',
      'rbd://haven@10.0.0.1,10.0.0.2/dr?keyring=%2Fetc%2Fhaven%2Fk',
      'rbd://admin@ceph/p?conf=%2Fvar%2Ft%2Fceph.conf&keyring=%2Fvar%2Ft%2Fa.keyring',
    ]) {
      assert.deepEqual(parseRbdLocation(formatRbdLocation(parseRbdLocation(spec))), parseRbdLocation(spec));
    }
  });

  it('refuses what is not a location, with RBD_BAD_LOCATION', () => {
    for (const bad of [
      'ceph/dr',
      'rbd://haven@ceph',
      'rbd://haven@ceph/',
      'rbd://-x@ceph/dr',
      'rbd://haven.dr@ceph/dr',
      'rbd://haven@ceph/d r',
      'rbd://haven@10.0.0.1/dr',
      'rbd://haven@ceph/dr?conf=relative.conf',
      'rbd://haven@ceph/dr?user=x',
      'rbd://haven@bad$name/dr',
    ]) {
      assert.throws(
        () => parseRbdLocation(bad),
        (e: HavenError) => e.code === 'RBD_BAD_LOCATION' && e.kind === 'usage',
        bad,
      );
    }
  });
});
