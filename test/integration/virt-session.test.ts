/**
 * One long-lived virsh process for a run's libvirt calls (src/virt/virsh-session.ts), against
 * real libvirt: the same answers and the same classified errors as one virsh process per call.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Virsh, VirtError } from '../../src/virt/index.ts';

const norm = (s: string) => s.replace(/\s+$/, '');

test('a session answers like separate virsh processes, errors included', async () => {
  const plain = new Virsh();
  const session = new Virsh({ session: true });
  try {
    // Commands whose answers other test files running alongside cannot change (a domain list
    // can: another file defining its guest between the two calls failed CI once).
    for (const args of [
      ['version'],
      ['hostname'],
      ['uri'],
      ['capabilities'],
      ['echo', "it's; a 'quoted' @@HAVEN-SESSION-1-E@@ argument"],
      ['nodeinfo'],
    ]) {
      assert.equal(norm(await session.run(args)), norm(await plain.run(args)), args.join(' '));
    }
    for (const v of [plain, session]) {
      await assert.rejects(
        v.run(['domstate', '--domain', 'haven-t-no-such-domain']),
        (e: unknown) => e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND',
      );
    }
    // After a failed command the session goes on.
    assert.match(await session.run(['uri']), /^qemu:\/\/\/system/);

    // Calls made while the session is busy run in processes of their own.
    const many = await Promise.all(Array.from({ length: 6 }, () => session.run(['uri'])));
    for (const r of many) assert.match(r, /^qemu:\/\/\/system/);
  } finally {
    session.close();
  }
});

test('a command that overruns its time ends the session; the next call starts a new one', async () => {
  const v = new Virsh({ session: true });
  try {
    // A fresh session must start virsh and connect first: far more than 1 ms.
    await assert.rejects(
      v.run(['capabilities'], { timeoutMs: 1 }),
      (e: unknown) => e instanceof VirtError && e.code === 'VIRT_TIMEOUT',
    );
    assert.match(await v.run(['uri']), /^qemu:\/\/\/system/);
  } finally {
    v.close();
  }
});

test('with an unreachable libvirt, a session fails like a plain call', async () => {
  const uri = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock';
  const codes: string[] = [];
  for (const v of [new Virsh({ uri }), new Virsh({ uri, session: true })]) {
    try {
      await assert.rejects(v.run(['list', '--all', '--name']), (e: unknown) => {
        codes.push((e as VirtError).code);
        return e instanceof VirtError;
      });
    } finally {
      v.close();
    }
  }
  assert.deepEqual(codes, ['VIRT_NO_LIBVIRTD', 'VIRT_NO_LIBVIRTD']);
});

test('a batch through the session answers like a batch script, failures in place', async () => {
  const commands = [
    ['uri'],
    ['domstate', '--domain', 'haven-t-no-such-domain'],
    ['echo', "semi; colon and 'quotes'"],
    ['hostname'],
  ];
  const plain = new Virsh();
  const session = new Virsh({ session: true });
  try {
    const [a, b] = [await plain.batch(commands), await session.batch(commands)];
    // The script's output of a command starts after its marker's newline; compare trimmed.
    assert.deepEqual(
      b.map((r) => ({ ...r, stdout: r.stdout.trim() })),
      a.map((r) => ({ ...r, stdout: r.stdout.trim() })),
    );
    assert.deepEqual(
      b.map((r) => r.ok),
      [true, false, true, true],
    );
    assert.match(b[1]?.error ?? '', /failed to get domain/);
  } finally {
    session.close();
  }
  const down = new Virsh({ uri: 'qemu+unix:///system?socket=/nonexistent/libvirt-sock', session: true });
  try {
    await assert.rejects(
      down.batch(commands),
      (e: unknown) => e instanceof VirtError && e.code === 'VIRT_NO_LIBVIRTD',
    );
  } finally {
    down.close();
  }
});
