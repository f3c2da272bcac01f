import assert from 'node:assert/strict';
import { test } from 'node:test';
import { needsResync, qemuToolError, VirtError, virshError, virshErrorText } from './errors.ts';

// Messages as virsh 9.0 prints them on this machine (collected from real runs).
const CASES: Array<[string, string, string]> = [
  [
    "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/nonexistent': No such file or directory\n",
    'VIRT_NO_LIBVIRTD',
    'unavailable',
  ],
  ["error: failed to get domain 'nosuch'\n", 'VIRT_DOMAIN_NOT_FOUND', 'not-found'],
  [
    "error: Domain checkpoint not found: no domain checkpoint with matching name 'nosuch'\n",
    'VIRT_CHECKPOINT_NOT_FOUND',
    'not-found',
  ],
  [
    "error: Domain checkpoint not found: Checkpoint 'nosuch' for incremental backup of disk 'vda' not found\n",
    'VIRT_CHECKPOINT_NOT_FOUND',
    'not-found',
  ],
  [
    "error: checkpoint inconsistent: missing or broken bitmap 'c1' for disk 'vda'\n",
    'VIRT_BITMAP_INCONSISTENT',
    'integrity',
  ],
  [
    'error: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)\n',
    'VIRT_BACKUP_ACTIVE',
    'conflict',
  ],
  [
    'error: Domain backup job id not found: no domain backup job present\n',
    'VIRT_NO_BACKUP_JOB',
    'not-found',
  ],
  [
    'error: Unable to freeze filesystems\nerror: argument unsupported: QEMU guest agent is not configured\n',
    'VIRT_AGENT_UNAVAILABLE',
    'unavailable',
  ],
  [
    'error: Guest agent is not responding: QEMU guest agent is not connected\n',
    'VIRT_AGENT_UNAVAILABLE',
    'unavailable',
  ],
  ['error: Requested operation is not valid: domain is not running\n', 'VIRT_DOMAIN_NOT_RUNNING', 'conflict'],
  [
    'error: Operation not supported: cannot perform disk backup for inactive domain\n',
    'VIRT_DOMAIN_NOT_RUNNING',
    'conflict',
  ],
  ['error: Requested operation is not valid: domain is already running\n', 'VIRT_DOMAIN_RUNNING', 'conflict'],
  [
    'error: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainSnapshotCreateXML)\n',
    'VIRT_TIMEOUT',
    'unavailable',
  ],
  [
    'error: Unable to thaw filesystems\nerror: argument unsupported: specifying mountpoints is not supported\n',
    'VIRT_UNSUPPORTED',
    'unavailable',
  ],
  ['error: XML error: an os <type> must be specified\n', 'VIRT_XML_INVALID', 'usage'],
  ['error: something nobody foresaw\n', 'VIRT_COMMAND_FAILED', 'io'],
];

test('virsh error text is classified into stable codes and kinds', () => {
  for (const [stderr, code, kind] of CASES) {
    const e = virshError(['dominfo', '--domain', 'x'], stderr, 1);
    assert.ok(e instanceof VirtError);
    assert.equal(e.code, code, stderr);
    assert.equal(e.kind, kind, stderr);
    assert.ok(e.hint && e.hint.length > 10, 'every code has a hint');
    // The original text is kept whole.
    assert.equal(e.details?.message, virshErrorText(stderr));
  }
});

test('virshErrorText keeps every error line and drops the prefix', () => {
  assert.equal(
    virshErrorText("error: failed to get domain 'a'\nerror: Domain not found: x\n\n"),
    "failed to get domain 'a'; Domain not found: x",
  );
  assert.equal(virshErrorText('plain text\n'), 'plain text');
});

test('qemu-nbd and qemu-img failures are classified', () => {
  assert.equal(
    qemuToolError('qemu-nbd', [], "qemu-nbd: Bitmap 'nosuch' is not found\n", 1).code,
    'VIRT_BITMAP_INCONSISTENT',
  );
  assert.equal(
    qemuToolError('qemu-img', [], "qemu-img: Dirty bitmap 'x' not found\n", 1).code,
    'VIRT_BITMAP_INCONSISTENT',
  );
  assert.equal(
    qemuToolError(
      'qemu-nbd',
      [],
      "qemu-nbd: Failed to blk_new_open 'a.qcow2': Could not open 'a.qcow2': No such file or directory",
      1,
    ).code,
    'VIRT_IMAGE_NOT_FOUND',
  );
  assert.equal(
    qemuToolError(
      'qemu-img',
      [],
      'qemu-img: Could not open \'a\': Failed to get "write" lock\nIs another process using the image [a]?',
      1,
    ).code,
    'VIRT_IMAGE_IN_USE',
  );
  assert.equal(qemuToolError('qemu-img', [], 'qemu-img: weird', 1).code, 'VIRT_QEMU_IMG_FAILED');
  assert.equal(qemuToolError('qemu-nbd', [], '', 3).code, 'VIRT_QEMU_NBD_FAILED');
});

test('needsResync is true only for bitmap trouble', () => {
  assert.equal(needsResync(new VirtError('VIRT_BITMAP_INCONSISTENT', 'x')), true);
  assert.equal(needsResync(new VirtError('VIRT_CHECKPOINT_NOT_FOUND', 'x')), false);
  assert.equal(needsResync(new Error('x')), false);
});
