import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { HavenError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';
import { copyImage } from './copy.ts';

const SIZE = 64 << 20;

/** A sparse raw image: 4 MiB of data at 8 MiB and 1 MiB at the very end, holes elsewhere. */
async function image(t: TestContext): Promise<{ dir: string; src: string; bytes: Buffer }> {
  const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, 'haven-t-copy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'web_0_1.raw');
  writeFileSync(src, '');
  const fh = await open(src, 'r+');
  await fh.truncate(SIZE);
  const data = Buffer.alloc(4 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + (i >> 12)) & 0xff;
  await fh.write(data, 0, data.length, 8 << 20);
  await fh.write(data, 0, 1 << 20, SIZE - (1 << 20));
  await fh.close();
  return { dir, src, bytes: readFileSync(src) };
}

for (const directIo of [true, false]) {
  test(`copyImage (direct I/O ${directIo ? 'on' : 'off'}): same bytes, same size, holes kept`, async (t) => {
    const { dir, src, bytes } = await image(t);
    const to = join(dir, 'web_0_incomplete.raw');
    const how = await copyImage(src, to, { directIo, log: silentLogger });
    // qemu-utils is installed by scripts/setup; a filesystem with reflinks clones instead.
    assert.ok(how === 'reflink' || how === (directIo ? 'qemu-img' : 'cp'), `copied by ${how}`);
    assert.equal(statSync(to).size, SIZE);
    assert.ok(readFileSync(to).equals(bytes));
    const allocated = statSync(to).blocks * 512;
    assert.ok(allocated <= 6 << 20, `the copy allocates ${allocated} bytes for 5 MiB of data`);
  });
}

test('copyImage: a missing source is an error, and nothing is left behind', async (t) => {
  const { dir } = await image(t);
  const to = join(dir, 'web_0_incomplete.raw');
  await assert.rejects(
    copyImage(join(dir, 'gone.raw'), to, { directIo: true, log: silentLogger }),
    HavenError,
  );
  assert.throws(() => statSync(to), /ENOENT/);
});
