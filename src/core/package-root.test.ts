import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { installPath, PACKAGE_ROOT } from './package-root.ts';

test('PACKAGE_ROOT is the directory of haven’s package.json, holding bin/haven.mjs', () => {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { name: string };
  assert.equal(pkg.name, 'haven');
  assert.ok(existsSync(installPath('bin', 'haven.mjs')));
  assert.ok(existsSync(installPath('src', 'daemon', 'ui')), 'the dashboard’s static files');
});
