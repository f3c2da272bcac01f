#!/usr/bin/python3
"""Haven's Ceph broker: one process per open rbd store, speaking for it to the cluster through
Ceph's own Python bindings (python3-rados, python3-rbd; ceph-common depends on both, so every host
with the `rbd` command has them). Haven (src/store/rbd/broker.ts) starts it, sends one request at
a time and bounds every request with a deadline of its own: a hung librados call (a full pool, a
stopped OSD) ends with the process killed, never with Haven waiting.

Messages both ways: a 4-byte big-endian length, that many bytes of JSON, then `len` bytes of raw
payload when the JSON has a `len` (object contents, image reads). Requests carry `op` and its
arguments; answers carry `ok` and the results, or `ok: false` with `errno`, `error` and `type`.

librbd 16 can abort this process from one of its own threads soon after an image is closed
("terminate called after throwing an instance of 'std::system_error'": a handler locks a mutex of
the image context just destroyed). Haven then sends the request again to a new broker, marked
`retry`: an earlier attempt may have done it, so a create, snapshot, clone or rename that finds
its result already there answers as done (broker.ts `REPEATABLE`).

Image data is not written here: qemu-nbd does that (docs/store-rbd.md says why). This process
creates, renames, snapshots, clones and removes images, reads them (verify, restore, digests of a
resized disk), and keeps the store's metadata objects in the pool's `haven` namespace.
"""
import errno
import json
import struct
import sys
import time

import rados
import rbd

import os

META_NAMESPACE = 'haven'
# HAVEN_RBD_TRACE=FILE: every request, appended to FILE (debugging a store's conversation).
TRACE = open(os.environ['HAVEN_RBD_TRACE'], 'a') if os.environ.get('HAVEN_RBD_TRACE') else None
SNAP_PREFIX = 'haven-'
# How long a reader waits for a generation's name during a rotation's swap (op_reader_open).
SWAP_WAIT_S = 5.0
# HAVEN_RBD_ABORT=FILE (a test hook, as store/crash.ts): while FILE exists and holds "OP WHEN", the
# broker aborts on a request OP, before or after doing it (WHEN); it removes FILE first, so that
# one broker aborts once (test/integration/rbd-broker-abort.test.ts).
ABORT = os.environ.get('HAVEN_RBD_ABORT')


def abort_point(op, when):
    if not ABORT:
        return
    try:
        with open(ABORT) as f:
            if f.read().split() != [op, when]:
                return
        os.unlink(ABORT)
    except FileNotFoundError:
        return
    os.abort()


def read_exact(stream, n):
    chunks = []
    while n > 0:
        b = stream.read(n)
        if not b:
            raise EOFError()
        chunks.append(b)
        n -= len(b)
    return b''.join(chunks)


def send(out, header, payload=b''):
    if payload:
        header['len'] = len(payload)
    body = json.dumps(header).encode('utf-8')
    out.write(struct.pack('>I', len(body)))
    out.write(body)
    if payload:
        out.write(payload)
    out.flush()


def error_number(e):
    n = getattr(e, 'errno', None)
    if isinstance(n, int) and n != 0:
        return abs(n)
    if isinstance(e, (rados.ObjectNotFound, rbd.ImageNotFound)):
        return errno.ENOENT
    if isinstance(e, (rados.PermissionError, rbd.PermissionError)):
        return errno.EPERM
    if isinstance(e, (rados.TimedOut, rbd.Timeout)):
        return errno.ETIMEDOUT
    return errno.EIO


class Broker:
    def __init__(self, opts):
        conf = {
            'rados_osd_op_timeout': str(opts['opTimeout']),
            'rados_mon_op_timeout': str(opts['opTimeout']),
            'client_mount_timeout': str(opts['mountTimeout']),
            # Clones of unprotected snapshots (clone format 2); reads never write an access time,
            # so a full pool can still be read (test/fixtures/ceph/README.md).
            'rbd_default_clone_format': '2',
            'rbd_atime_update_interval': '0',
            'rbd_mtime_update_interval': '0',
        }
        if opts.get('keyring'):
            conf['keyring'] = opts['keyring']
        if opts.get('monHost'):
            conf['mon_host'] = opts['monHost']
        self.cluster = rados.Rados(conffile=opts.get('conf'), rados_id=opts['user'], conf=conf)
        self.cluster.connect(timeout=int(opts['mountTimeout']))
        self.pool = opts['pool']
        self.io = self.cluster.open_ioctx(self.pool)
        self.meta = self.cluster.open_ioctx(self.pool)
        self.meta.set_namespace(META_NAMESPACE)
        self.rbd = rbd.RBD()
        self.readers = {}

    # -- cluster and pool

    def op_hello(self, req):
        return {'fsid': self.cluster.get_fsid(), 'pool': self.pool}

    def mon(self, cmd):
        ret, out, err = self.cluster.mon_command(json.dumps(dict(cmd, format='json')), b'')
        if ret != 0:
            raise rados.Error(err or 'monitor command failed', errno=-ret)
        return json.loads(out) if out else None

    def op_pool_status(self, req):
        quota = self.mon({'prefix': 'osd pool get-quota', 'pool': self.pool})
        stats = self.io.get_stats()
        full = False
        for p in self.mon({'prefix': 'osd dump'}).get('pools', []):
            if p.get('pool_name') == self.pool:
                flags = p.get('flags_names', '')
                full = 'full' in flags.split(',') or 'full_quota' in flags.split(',')
        return {
            'quotaBytes': quota.get('quota_max_bytes', 0),
            'usedBytes': stats.get('num_bytes', 0),
            'full': full,
        }

    def op_df(self, req):
        df = self.mon({'prefix': 'df'})
        for p in df.get('pools', []):
            if p.get('name') == self.pool:
                s = p.get('stats', {})
                return {'storedBytes': s.get('stored', 0), 'usedBytes': s.get('bytes_used', 0),
                        'maxAvailBytes': s.get('max_avail', 0)}
        raise rados.ObjectNotFound('pool %s not in df' % self.pool, errno=errno.ENOENT)

    # -- metadata objects (namespace `haven`)

    def op_obj_get(self, req):
        name = req['name']
        try:
            size, _ = self.meta.stat(name)
        except rados.ObjectNotFound:
            return {'missing': True}
        data = self.meta.read(name, size, 0) if size else b''
        return {'missing': False}, data

    def op_obj_put(self, req, payload=b''):
        self.meta.write_full(req['name'], payload)
        return {}

    def op_obj_rm(self, req):
        try:
            self.meta.remove_object(req['name'])
            return {'removed': True}
        except rados.ObjectNotFound:
            return {'removed': False}

    def op_omap_list(self, req):
        out = {}
        after = ''
        while True:
            with rados.ReadOpCtx() as op:
                it, _ = self.meta.get_omap_vals(op, after, req.get('prefix', ''), 1000)
                try:
                    self.meta.operate_read_op(op, req['obj'])
                except rados.ObjectNotFound:
                    return {'entries': out}
                batch = list(it)
            for k, v in batch:
                out[k] = v.decode('utf-8')
            if len(batch) < 1000:
                return {'entries': out}
            after = batch[-1][0]

    def op_omap_set(self, req):
        keys = tuple(req['entries'].keys())
        vals = tuple(v.encode('utf-8') for v in req['entries'].values())
        with rados.WriteOpCtx() as op:
            self.meta.set_omap(op, keys, vals)
            self.meta.operate_write_op(op, req['obj'])
        return {}

    def op_omap_rm(self, req):
        with rados.WriteOpCtx() as op:
            self.meta.remove_omap_keys(op, tuple(req['keys']))
            try:
                self.meta.operate_write_op(op, req['obj'])
            except rados.ObjectNotFound:
                pass
        return {}

    # -- images

    def op_img_list(self, req):
        return {'names': sorted(self.rbd.list(self.io))}

    def op_img_info(self, req):
        try:
            with rbd.Image(self.io, req['name'], read_only=True) as img:
                return self.describe(img)
        except rbd.ImageNotFound:
            return {'missing': True}

    def describe(self, img):
        parent = None
        try:
            spec = img.get_parent_image_spec()
            parent = {'pool': spec['pool_name'], 'image': spec['image_name'], 'snap': spec['snap_name']}
        except rbd.ImageNotFound:
            pass
        snaps = []
        for s in img.list_snaps():
            if s.get('namespace', rbd.RBD_SNAP_NAMESPACE_TYPE_USER) != rbd.RBD_SNAP_NAMESPACE_TYPE_USER:
                continue
            img.set_snap(s['name'])
            children = len(list(img.list_children2()))
            img.set_snap(None)
            snaps.append({'name': s['name'], 'children': children})
        return {'missing': False, 'size': img.size(), 'parent': parent, 'snaps': snaps,
                'imageId': img.id()}

    def op_img_allocated(self, req):
        """Bytes of data the image holds itself (a clone: what it no longer shares)."""
        total = [0]

        def count(_offset, length, exists):
            if exists:
                total[0] += length
            return 0

        try:
            with rbd.Image(self.io, req['name'], read_only=True) as img:
                img.diff_iterate(0, img.size(), None, count, include_parent=False, whole_object=False)
        except rbd.ImageNotFound:
            return {'bytes': 0}
        return {'bytes': total[0]}

    def op_img_create(self, req):
        try:
            self.rbd.create(self.io, req['name'], req['size'], old_format=False)
        except rbd.ImageExists:
            if not (req.get('retry') and self.image_size(req['name']) == req['size']):
                raise
        return {}

    def image_size(self, name):
        with rbd.Image(self.io, name, read_only=True) as img:
            return img.size()

    def op_img_resize(self, req):
        with rbd.Image(self.io, req['name']) as img:
            img.resize(req['size'])
        return {}

    def op_img_rename(self, req):
        try:
            self.rbd.rename(self.io, req['from'], req['to'])
            return {'renamed': True}
        except rbd.ImageNotFound:
            # Haven renames only onto a name it freed first: after an attempt that may have renamed
            # it, a target in place and no source is that attempt's work.
            return {'renamed': bool(req.get('retry')) and self.image_exists(req['to'])}

    def image_exists(self, name):
        return name in self.rbd.list(self.io)

    def op_img_rm(self, req):
        """Removes an image; a clone's Haven snapshot on its parent goes with it (clone format 2
        moves a snapshot that still has other clones to the trash namespace, where Ceph removes it
        with its last clone); an image whose snapshots still have clones goes to the RBD trash and
        is removed by `trash_gc` once they are gone."""
        name = req['name']
        try:
            with rbd.Image(self.io, name, read_only=True) as img:
                info = self.describe(img)
        except rbd.ImageNotFound:
            return {'removed': False}
        with rbd.Image(self.io, name) as img:
            for s in info['snaps']:
                if s['name'].startswith(SNAP_PREFIX):
                    img.remove_snap(s['name'])
        try:
            self.rbd.remove(self.io, name)
            how = 'removed'
        except rbd.ImageHasSnapshots:
            self.rbd.trash_move(self.io, name, 0)
            how = 'trashed'
        parent = info['parent']
        if parent and parent['pool'] == self.pool and parent['snap'].startswith(SNAP_PREFIX):
            self.remove_snap_if_unused(parent['image'], parent['snap'])
        return {'removed': True, 'how': how}

    def remove_snap_if_unused(self, image, snap):
        try:
            with rbd.Image(self.io, image) as img:
                img.set_snap(snap)
                children = len(list(img.list_children2()))
                img.set_snap(None)
                if children == 0:
                    img.remove_snap(snap)
        except (rbd.ImageNotFound, rbd.ObjectNotFound):
            return

    def op_snap_create(self, req):
        with rbd.Image(self.io, req['name']) as img:
            try:
                img.create_snap(req['snap'])
            except rbd.ImageExists:
                if not req.get('retry'):
                    raise
        return {}

    def op_snap_rm(self, req):
        try:
            with rbd.Image(self.io, req['name']) as img:
                img.remove_snap(req['snap'])
            return {'removed': True}
        except rbd.ImageNotFound:
            return {'removed': False}

    def op_snap_prune(self, req):
        """Removes the image's Haven snapshots that no clone uses (left by a crash between taking
        a snapshot and cloning it)."""
        removed = []
        with rbd.Image(self.io, req['name']) as img:
            for s in self.describe(img)['snaps']:
                if s['name'].startswith(SNAP_PREFIX) and s['children'] == 0 and s['name'] not in req.get('keep', []):
                    img.remove_snap(s['name'])
                    removed.append(s['name'])
        return {'removed': removed}

    def op_clone(self, req):
        try:
            self.rbd.clone(self.io, req['parent'], req['snap'], self.io, req['child'])
        except rbd.ImageExists:
            if not req.get('retry'):
                raise
            with rbd.Image(self.io, req['child'], read_only=True) as img:
                parent = self.describe(img)['parent']
            if parent != {'pool': self.pool, 'image': req['parent'], 'snap': req['snap']}:
                raise
        return {}

    def op_deep_copy(self, req):
        with rbd.Image(self.io, req['from'], read_only=True) as img:
            img.deep_copy(self.io, req['to'])
        return {}

    def op_trash_gc(self, req):
        """Removes trashed images (Haven's deferred removals) that no clone needs any more."""
        removed = []
        for entry in self.rbd.trash_list(self.io):
            try:
                self.rbd.trash_remove(self.io, entry['id'], True)
                removed.append(entry['name'])
            except (rbd.ImageHasSnapshots, rbd.ImageBusy, rbd.InvalidArgument):
                pass
        return {'removed': removed}

    # -- reading images

    def open_named(self, name):
        """Opens `name` read-only, or None when it does not exist. A rotation's swap (images.ts
        `copy`) leaves a generation's name free for the moment between the head's rename and the
        clone that takes the name: a missing name is looked up again until SWAP_WAIT_S passed."""
        deadline = time.monotonic() + SWAP_WAIT_S
        while True:
            try:
                return rbd.Image(self.io, name, read_only=True)
            except rbd.ImageNotFound:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.05)

    def haven_snaps(self, image_id):
        """The Haven snapshots of an image, oldest first (fresh: a read-only handle's list goes stale)."""
        with rbd.Image(self.io, image_id=image_id, read_only=True) as img:
            snaps = [s for s in img.list_snaps() if s['name'].startswith(SNAP_PREFIX)]
        return [s['name'] for s in sorted(snaps, key=lambda s: s['id'])]

    def op_reader_open(self, req):
        """Opens a reader under the handle Haven chose (unique in its process, so that a handle of
        a broker that died is never one of this broker's). The answer describes the reader (`imageId`,
        `head`, `snaps`) so that a new broker can open it again as it was (`reader_reopen`)."""
        self.drop_reader(req['handle'])
        img = self.open_named(req['name'])
        if img is None:
            return {'missing': True}
        image_id = img.id()
        is_head = self.describe(img)['parent'] is None
        snaps = self.haven_snaps(image_id) if is_head else []
        self.readers[req['handle']] = {'img': img, 'id': image_id, 'head': is_head, 'snaps': set(snaps)}
        if TRACE:
            TRACE.write('open %s %s head=%s snaps=%s\n' % (req['name'], image_id, is_head, snaps))
        return {'missing': False, 'size': img.size(), 'imageId': image_id, 'head': is_head, 'snaps': snaps}

    def op_reader_reopen(self, req):
        """A reader as an earlier broker had it: the image by its id, at the snapshot it had moved
        to (`snap`) or at its head; a generation retired meanwhile reads as zeroes (read_piece)."""
        self.drop_reader(req['handle'])
        snap = req.get('snap')
        try:
            img = rbd.Image(self.io, image_id=req['imageId'], snapshot=snap, read_only=True)
        except (rbd.ImageNotFound, rbd.ObjectNotFound):
            img = None
        self.readers[req['handle']] = {'img': img, 'id': req['imageId'], 'snap': snap,
                                       'head': bool(req['head']) and snap is None, 'snaps': set(req['snaps'])}
        return {}

    def drop_reader(self, handle):
        r = self.readers.pop(handle, None)
        if r is not None and r['img'] is not None:
            r['img'].close()

    def reader(self, handle):
        r = self.readers.get(handle)
        if r is None:
            raise rados.Error('no reader %s in this broker' % handle, errno=errno.ESTALE)
        return r

    def op_reader_read(self, req):
        """Reads follow the image opened, through renames, as a file descriptor does. Only a
        disk's head is ever written after it was a generation: the next rotation renames it
        `_incomplete`, snapshots it and only then writes the delta (images.ts `copy`), so the
        generation a reader opened is the head at the first snapshot taken since. A head that has
        a new snapshot once a piece is read is read again at that snapshot."""
        r = self.reader(req['handle'])
        offset, length = req['offset'], req['length']
        data = self.read_piece(r, offset, length)
        if r['head']:
            try:
                new = [s for s in self.haven_snaps(r['id']) if s not in r['snaps']]
            except rbd.ImageNotFound:
                new = []  # removed: the generation was retired meanwhile
            if TRACE:
                TRACE.write('check %s new=%s\n' % (r['id'], new))
            if new:
                r['img'].close()
                r['img'] = rbd.Image(self.io, image_id=r['id'], snapshot=new[0], read_only=True)
                r['head'] = False
                r['snap'] = new[0]
                data = self.read_piece(r, offset, length)
        if len(data) < length:
            data += bytes(length - len(data))
        return {'snap': r.get('snap')}, data

    def read_piece(self, r, offset, length):
        """A piece of an open image; zeroes once the image or its snapshot is gone (a retired
        generation: a reader may see anything of a generation that left while it read)."""
        if not length or r['img'] is None:
            return bytes(length)
        try:
            return r['img'].read(offset, length, rados.LIBRADOS_OP_FLAG_FADVISE_DONTNEED)
        except (rbd.ImageNotFound, rbd.ObjectNotFound):
            return bytes(length)

    def op_reader_close(self, req):
        self.drop_reader(req['handle'])
        return {}

    def op_read(self, req):
        try:
            with rbd.Image(self.io, req['name'], read_only=True) as img:
                size = img.size()
                off = req['offset']
                n = max(0, min(req['length'], size - off))
                data = img.read(off, n) if n else b''
        except rbd.ImageNotFound:
            return {'missing': True}
        return {'missing': False}, data + bytes(req['length'] - len(data))

    # -- capabilities (haven doctor)

    def op_probe_write(self, req):
        name = 'probe.' + req['token']
        self.meta.write_full(name, b'haven')
        self.meta.remove_object(name)
        return {}


def main():
    opts = json.loads(sys.argv[1])
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    try:
        broker = Broker(opts)
    except Exception as e:  # noqa: BLE001 - every failure to connect is reported the same way
        send(out, {'id': 0, 'ok': False, 'errno': error_number(e), 'error': str(e),
                   'type': e.__class__.__name__})
        return
    send(out, dict({'id': 0, 'ok': True}, **broker.op_hello({})))
    while True:
        try:
            n = struct.unpack('>I', read_exact(inp, 4))[0]
            req = json.loads(read_exact(inp, n))
            payload = read_exact(inp, req['len']) if req.get('len') else b''
        except EOFError:
            return
        if TRACE:
            TRACE.write('%d > %s\n' % (os.getpid(), json.dumps(req)))
            TRACE.flush()
        fn = getattr(broker, 'op_' + req.get('op', ''), None)
        try:
            if fn is None:
                raise rados.Error('unknown op %s' % req.get('op'), errno=errno.EINVAL)
            abort_point(req['op'], 'before')
            res = fn(req, payload) if req.get('op') == 'obj_put' else fn(req)
            abort_point(req['op'], 'after')
            data = b''
            if isinstance(res, tuple):
                res, data = res
            send(out, dict(res, id=req['id'], ok=True), data)
        except Exception as e:  # noqa: BLE001 - every failure goes back to Haven with its errno
            send(out, {'id': req['id'], 'ok': False, 'errno': error_number(e), 'error': str(e),
                       'type': e.__class__.__name__})


if __name__ == '__main__':
    main()
