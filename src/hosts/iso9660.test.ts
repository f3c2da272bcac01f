import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { exec } from '../core/exec.ts';
import { IsoImage } from './iso9660.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function makeIso(rockRidge: boolean): Promise<{ iso: string; kernel: Buffer; cfg: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-iso-'));
  dirs.push(dir);
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'isolinux'), { recursive: true });
  const kernel = randomBytes(3 * 1024 * 1024 + 5);
  const cfg =
    'label rear\n  kernel kernel\n  append initrd=initrd.cgz root=/dev/ram0 vga=normal rw console=ttyS0,115200\n';
  await writeFile(join(tree, 'isolinux', 'kernel'), kernel);
  await writeFile(join(tree, 'isolinux', 'isolinux.cfg'), cfg);
  for (let i = 0; i < 90; i++) await writeFile(join(tree, `filler-with-a-long-name-${i}.txt`), `${i}\n`);
  const iso = join(dir, 'media.iso');
  await exec('genisoimage', [
    '-quiet',
    ...(rockRidge ? ['-R', '-J'] : []),
    '-V',
    'REAR-ISO',
    '-o',
    iso,
    tree,
  ]);
  return { iso, kernel, cfg };
}

for (const rockRidge of [true, false]) {
  it(`reads files out of an ISO image ${rockRidge ? 'with Rock Ridge names' : 'with plain ISO 9660 names'}`, async () => {
    const { iso, kernel, cfg } = await makeIso(rockRidge);
    const img = await IsoImage.open(iso);
    try {
      const k = await img.find('isolinux/kernel');
      assert.ok(k && !k.directory);
      assert.equal(k.size, kernel.length);
      const out = join(iso, '..', 'kernel.out');
      await img.extract(k, out);
      assert.ok((await readFile(out)).equals(kernel));
      const c = await img.find('ISOLINUX/isolinux.cfg');
      assert.ok(c);
      assert.equal(await img.readText(c), cfg);
      assert.equal(await img.find('isolinux/initrd.cgz'), null);
      assert.equal(await img.find('isolinux/kernel/x'), null);
    } finally {
      await img.close();
    }
  });
}

it('refuses a file that is not an ISO image with HOST_MEDIA_UNREADABLE', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-iso-'));
  dirs.push(dir);
  const bad = join(dir, 'bad.iso');
  await writeFile(bad, randomBytes(40 * 2048));
  await assert.rejects(IsoImage.open(bad), { code: 'HOST_MEDIA_UNREADABLE' });
});
