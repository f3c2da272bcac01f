import assert from 'node:assert/strict';
import { test } from 'node:test';
import { noMarkerHint } from './drill.ts';

test('a copy without its boot marker: the hint names boot files its definition lost when it arrived', () => {
  const plain = noMarkerHint('web01', []);
  assert.match(plain, /console tail/);
  assert.equal(noMarkerHint('web01', ['devices/hostdev (pci 0000:01:00.0): passthrough']), plain);

  const lost = noMarkerHint('web01', [
    'os/kernel (/home/x/vmlinuz): a host file outside the DR host’s boot directories (definitions.boot_files); the server boots from its disk instead',
    'os/initrd (/home/x/initrd.img): a host file outside the DR host’s boot directories (definitions.boot_files); the server boots from its disk instead',
    'devices/hostdev (pci 0000:01:00.0): passthrough',
  ]);
  assert.ok(lost.startsWith(plain));
  assert.match(
    lost,
    /lost os\/kernel \(\/home\/x\/vmlinuz\), os\/initrd \(\/home\/x\/initrd\.img\) when it was written/,
  );
  assert.match(
    lost,
    /\(a host file outside the DR host’s boot directories \(definitions\.boot_files\); the server boots from its disk instead\)/,
  );
  assert.match(lost, /definitions\/web01\.xml/);
  assert.doesNotMatch(lost, /hostdev/);
});
