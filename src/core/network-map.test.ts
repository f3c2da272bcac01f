import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfig } from './config.ts';
import { ValueProblem } from './config-values.ts';
import { mapRef, parseMapEntry, parseNetworkRef, resolveNetworks, validBridgeName } from './network-map.ts';

test('names: bridge:, network: or bare; Linux bridge names and libvirt network names checked', () => {
  assert.deepEqual(parseNetworkRef('bridge:br0'), { kind: 'bridge', name: 'br0' });
  assert.deepEqual(parseNetworkRef('network:dr-lan'), { kind: 'network', name: 'dr-lan' });
  assert.deepEqual(parseNetworkRef('prod-br'), { kind: undefined, name: 'prod-br' });
  for (const bad of [
    '',
    'bridge:a-name-longer-than-15',
    'bridge:a/b',
    'network:a b',
    '../x',
    '-x',
    'x:y',
    42,
  ]) {
    assert.throws(() => parseNetworkRef(bad), ValueProblem, String(bad));
  }
  assert.equal(validBridgeName('..'), false);
  assert.equal(validBridgeName('br0'), true);
  assert.deepEqual(parseMapEntry('prod-br=network:dr-lan'), ['prod-br', 'network:dr-lan']);
  for (const bad of ['prod-br', '=dr', 'prod=', 'a=b/c'])
    assert.throws(() => parseMapEntry(bad), ValueProblem, bad);
});

test('a bare name matches a bridge or a network and keeps its kind; a prefixed key wins', () => {
  const map = { 'prod-br': 'dr-br', default: 'dr-lan', 'bridge:lab': 'network:lab-net', lab: 'other' };
  assert.deepEqual(mapRef(map, { kind: 'bridge', name: 'prod-br' }), {
    to: { kind: 'bridge', name: 'dr-br' },
    mapped: true,
  });
  assert.deepEqual(mapRef(map, { kind: 'network', name: 'default' }), {
    to: { kind: 'network', name: 'dr-lan' },
    mapped: true,
  });
  assert.deepEqual(mapRef(map, { kind: 'bridge', name: 'lab' }), {
    to: { kind: 'network', name: 'lab-net' },
    mapped: true,
  });
  assert.deepEqual(mapRef(map, { kind: 'network', name: 'lab' }).to, { kind: 'network', name: 'other' });
  assert.deepEqual(mapRef(map, { kind: 'bridge', name: 'br9' }), {
    to: { kind: 'bridge', name: 'br9' },
    mapped: false,
  });
});

test('layers: later ones win, entry by entry; the MAC policy falls back', () => {
  const r = resolveNetworks(
    [{ map: { a: 'b', c: 'd' }, mac: 'keep' }, undefined, { map: { a: 'x' }, mac: undefined }],
    'generate',
  );
  assert.deepEqual({ ...r.map }, { a: 'x', c: 'd' });
  assert.equal(r.mac, 'keep');
  assert.equal(resolveNetworks([{ map: {}, mac: undefined }], 'generate').mac, 'generate');
});

test('the networks section and a drill’s networks in the configuration', () => {
  const c = parseConfig(
    `
networks:
  map:
    prod-br: dr-br
    network:default: network:dr-lan
  mac: keep
  servers:
    web01: { map: { prod-br: dmz-br }, mac: generate }
drills:
  a: { store: /srv/haven, servers: ["*"], boot_marker: { serial: x } }
  b: { store: /srv/haven, servers: ["*"], boot_marker: { serial: x }, networks: mapped }
  c: { store: /srv/haven, servers: ["*"], boot_marker: { serial: x }, networks: { map: { prod-br: drill-br } } }
`,
    'test.yaml',
  );
  assert.deepEqual({ ...c.networks.map }, { 'prod-br': 'dr-br', 'network:default': 'network:dr-lan' });
  assert.equal(c.networks.mac, 'keep');
  assert.deepEqual({ ...c.networks.servers.web01!.map }, { 'prod-br': 'dmz-br' });
  assert.equal(c.networks.servers.web01!.mac, 'generate');
  assert.equal(c.drills.a!.networks, 'isolated');
  assert.equal(c.drills.b!.networks, 'mapped');
  const own = c.drills.c!.networks;
  assert.ok(typeof own === 'object');
  assert.deepEqual({ ...own.map }, { 'prod-br': 'drill-br' });
  assert.equal(own.mac, undefined);
  assert.deepEqual({ ...parseConfig('', 'empty.yaml').networks.map }, {});
});

test('bad network settings are configuration errors at their key', () => {
  const cases: Array<[string, RegExp]> = [
    ['networks:\n  map: [a, b]\n', /networks\.map: expected a mapping/],
    [
      'networks:\n  map:\n    prod-br: "dr br"\n',
      /networks\.map: "prod-br": expected a bridge or network name/,
    ],
    ['networks:\n  mac: random\n', /networks\.mac: expected one of "keep", "generate"/],
    ['networks:\n  servers:\n    web01: { mapp: {} }\n', /networks\.servers\.web01: unknown key mapp/],
    [
      'drills:\n  a: { store: /s, servers: ["*"], boot_marker: { serial: x }, networks: bridged }\n',
      /drills\.a\.networks: expected one of "isolated", "mapped"/,
    ],
  ];
  for (const [text, re] of cases) {
    try {
      parseConfig(text, 'test.yaml');
      assert.fail(`accepted: ${text}`);
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      const msgs = e.problems.map((p) => `${p.path}: ${p.message}`).join('\n');
      assert.match(msgs, re);
    }
  }
});
