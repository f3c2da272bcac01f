import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildBackupXml, parseBackupXml, parseJobInfoRaw } from './backup.ts';
import { VirtError } from './errors.ts';

// backup-dumpxml of an incremental pull backup as libvirt 9.0 writes it (real run).
const JOB = `<domainbackup mode='pull'>
  <incremental>k1</incremental>
  <server transport='unix' socket='/run/haven/nbd.sock'/>
  <disks>
    <disk name='vda' backup='yes' type='file' backupmode='incremental' incremental='k1' exportname='vda' exportbitmap='backup-vda' index='8'>
      <driver type='qcow2'/>
      <scratch file='/run/haven/vda.scratch'/>
    </disk>
    <disk name='vdb' backup='yes' type='file' backupmode='full' exportname='vdb' index='9'>
      <driver type='qcow2'/>
      <scratch file='/run/haven/vdb.scratch'/>
    </disk>
    <disk name='hdc' backup='no'/>
  </disks>
</domainbackup>`;

test('parses a running pull backup: socket, per-disk exports and bitmap contexts', () => {
  const job = parseBackupXml(JOB);
  assert.equal(job.socketPath, '/run/haven/nbd.sock');
  assert.equal(job.incrementalFrom, 'k1');
  assert.deepEqual(job.excluded, ['hdc']);
  assert.deepEqual(job.exports, [
    {
      disk: 'vda',
      exportName: 'vda',
      bitmapContext: 'qemu:dirty-bitmap:backup-vda',
      mode: 'incremental',
      incrementalFrom: 'k1',
      scratchFile: '/run/haven/vda.scratch',
    },
    {
      disk: 'vdb',
      exportName: 'vdb',
      bitmapContext: undefined,
      mode: 'full',
      incrementalFrom: undefined,
      scratchFile: '/run/haven/vdb.scratch',
    },
  ]);
});

test('a push-mode job is reported as unsupported, not misread', () => {
  assert.throws(
    () => parseBackupXml("<domainbackup><disks><disk name='vda'/></disks></domainbackup>"),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_UNSUPPORTED',
  );
  assert.throws(
    () => parseBackupXml('<domaincheckpoint/>'),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_XML_INVALID',
  );
});

test('builds backup XML that round-trips through the parser, escaping names', () => {
  const xml = buildBackupXml({
    socketPath: "/run/a'b/nbd.sock",
    incrementalFrom: 'cp<1>',
    disks: [
      { target: 'vda', backup: true, incremental: true, scratchFile: '/run/x/vda.scratch' },
      { target: 'vdb', backup: true, incremental: false, scratchFile: '/run/x/vdb.scratch' },
      { target: 'hdc', backup: false, incremental: false },
    ],
  });
  assert.match(
    xml,
    /<disk name='vda' backup='yes' type='file' backupmode='incremental' incremental='cp&lt;1&gt;'>/,
  );
  assert.match(xml, /<disk name='vdb' backup='yes' type='file' backupmode='full'>/);
  const job = parseBackupXml(xml);
  assert.equal(job.socketPath, "/run/a'b/nbd.sock");
  assert.equal(job.incrementalFrom, 'cp<1>');
  assert.deepEqual(
    job.exports.map((e) => [e.disk, e.mode, e.scratchFile]),
    [
      ['vda', 'incremental', '/run/x/vda.scratch'],
      ['vdb', 'full', '/run/x/vdb.scratch'],
    ],
  );
  assert.deepEqual(job.excluded, ['hdc']);
});

test('domjobinfo --rawstats is decoded', () => {
  const info = parseJobInfoRaw(
    'Job type: 2\n\noperation: 9\ntime_elapsed: 101\ndisk_temp_used: 65536\ndisk_temp_total: 100663296\n',
  );
  assert.deepEqual(info, {
    type: 'unbounded',
    operation: 'backup',
    elapsedMs: 101,
    scratchUsed: 65536,
    scratchTotal: 100663296,
    error: undefined,
  });
  assert.equal(parseJobInfoRaw('Job type: 0\n\n').type, 'none');
  assert.equal(
    parseJobInfoRaw('Job type: 3\noperation: 9\nerrmsg: Operation canceled\n').error,
    'Operation canceled',
  );
});
