/**
 * The client of broker.py: the rbd store's one connection to its Ceph cluster, for everything but
 * writing image data (qemu-nbd does that: writable.ts). One request at a time, each bounded by a
 * deadline of its own: librados bounds OSD and monitor operations with the timeouts the broker
 * sets, but not everything (taking an image's exclusive lock; test/fixtures/ceph/README.md), so
 * a request past its deadline kills the broker and fails with RBD_TIMEOUT (or NO_SPACE when the
 * pool turns out to be full). The next request starts a new broker.
 *
 * Why a Python process: librados and librbd have no Node binding on npm, and a native addon of
 * our own would have to be built on every DR host; Ceph's own Python bindings come with
 * ceph-common, which a host that reaches the cluster has anyway (docs/decisions.md).
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { HavenError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { installPath } from '../../core/package-root.ts';
import { type StoreError, storeError } from '../errors.ts';
import { poolFull, rbdError, timedOut } from './errors.ts';
import type { RbdLocation } from './location.ts';

/** Debian's interpreter: the one python3-rados and python3-rbd are installed for. */
const PYTHON = '/usr/bin/python3';

/**
 * Requests sent again, marked `retry`, to a new broker when the one that had them died (librbd 16
 * aborts its process now and then soon after an image is closed: broker.py). Each reads, sets
 * what it names to a state the request states, or is answered as done by broker.py when an
 * earlier attempt did it (a create, snapshot, clone or rename). Left out: `deep_copy`, which may
 * leave a partial copy, and `reader_read`, whose reader the new broker does not have (reader.ts
 * opens it again).
 */
const REPEATABLE: ReadonlySet<string> = new Set([
  'pool_status',
  'df',
  'obj_get',
  'obj_put',
  'obj_rm',
  'omap_list',
  'omap_set',
  'omap_rm',
  'img_list',
  'img_info',
  'img_allocated',
  'img_create',
  'img_resize',
  'img_rename',
  'img_rm',
  'snap_create',
  'snap_rm',
  'snap_prune',
  'clone',
  'trash_gc',
  'read',
  'reader_open',
  'reader_reopen',
  'reader_close',
  'probe_write',
]);

/** How many times one request is sent again after its broker died. */
const REPEATS = 2;

/** Whether `e` says the broker died with the request unanswered (not killed by Haven). */
export function brokerDied(e: unknown): boolean {
  return e instanceof HavenError && e.code === 'RBD_FAILED' && e.details?.brokerDied === true;
}

export interface BrokerOptions {
  location: RbdLocation;
  /** librados operation timeout, seconds (rados_osd_op_timeout, rados_mon_op_timeout). */
  opTimeoutS: number;
  /** How long connecting to a monitor may take, seconds (client_mount_timeout). */
  mountTimeoutS: number;
  log: Logger;
}

export interface Reply {
  [key: string]: unknown;
}

interface Pending {
  /** The broker process the request went to: only its exit fails the request. */
  child: object | undefined;
  resolve: (r: { reply: Reply; data: Buffer }) => void;
  reject: (e: Error) => void;
}

const ERRNO: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  13: 'EACCES',
  16: 'EBUSY',
  17: 'EEXIST',
  22: 'EINVAL',
  28: 'ENOSPC',
  39: 'ENOTEMPTY',
  108: 'ESHUTDOWN',
  110: 'ETIMEDOUT',
  122: 'EDQUOT',
};

/** A failed request: the broker's answer (errno, exception type, message) as a store error. */
export function brokerError(op: string, errno: number, type: string, message: string): StoreError {
  const text = `Ceph: ${op} failed: ${message || type} (${ERRNO[errno] ?? `errno ${errno}`})`;
  const details = { op, errno, type };
  if (errno === 1 || errno === 13)
    return rbdError(
      'RBD_PERMISSION_DENIED',
      'refused',
      text,
      "The cephx user lacks a capability: give it mon 'profile rbd' and osd 'profile rbd pool=POOL' (docs/store-rbd.md); `haven doctor --store PATH` checks them.",
      details,
    );
  if (errno === 110)
    return rbdError(
      'RBD_TIMEOUT',
      'unavailable',
      text,
      'Check the cluster (ceph status): a monitor or OSD may be down, or the pool full. Stored generations are intact.',
      details,
    );
  if (errno === 28 || errno === 122)
    return storeError('NO_SPACE', 'resource', text, {
      hint: 'Raise the pool quota or free space in the cluster; stored generations are intact.',
      details,
    });
  return rbdError(
    'RBD_FAILED',
    'io',
    text,
    'See the message; `haven doctor --store PATH` checks the cluster, pool and user.',
    details,
  );
}

export class Broker {
  private child: ChildProcessByStdio<Writable, Readable, Readable> | undefined;
  private starting: Promise<Reply> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private turn: Promise<unknown> = Promise.resolve();
  private pieces: Buffer[] = [];
  private buffered = 0;
  /** Bytes the next frame needs before it can be read (its length prefix, then all of it). */
  private need = 4;
  /** Brokers this one ended itself (a deadline passed): their exit is no crash. */
  private readonly killed = new WeakSet<object>();
  private nextReader = 1;

  constructor(private readonly o: BrokerOptions) {}

  /** The request deadline: longer than the librados timeouts, so they normally answer first. */
  get deadlineMs(): number {
    return (Math.max(this.o.opTimeoutS, this.o.mountTimeoutS) * 2 + 10) * 1000;
  }

  /** Connects (once per broker process) and answers the cluster's fsid. */
  hello(): Promise<Reply> {
    this.starting ??= this.start();
    return this.starting;
  }

  /** Sends one request (after the previous one finished); `payload` goes as raw bytes. */
  call(op: string, args: Record<string, unknown> = {}, payload?: Buffer): Promise<Reply> {
    return this.callData(op, args, payload).then((r) => r.reply);
  }

  callData(
    op: string,
    args: Record<string, unknown> = {},
    payload?: Buffer,
  ): Promise<{ reply: Reply; data: Buffer }> {
    const run = this.turn
      .then(() => this.sendRepeating(op, args, payload))
      .catch((e: unknown) => this.explain(op, e));
    this.turn = run.catch(() => {});
    return run;
  }

  /** A reader handle no other reader of this process has had, in this broker or an earlier one. */
  readerHandle(): number {
    return this.nextReader++;
  }

  private async sendRepeating(op: string, args: Record<string, unknown>, payload?: Buffer) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.send(op, attempt ? { ...args, retry: true } : args, payload);
      } catch (e) {
        if (attempt >= REPEATS || !REPEATABLE.has(op) || !brokerDied(e)) throw e;
        this.o.log.debug('request sent again to a new Ceph broker', { op });
      }
    }
  }

  /**
   * A timeout is asked about once more (errors.ts): Ceph's clients wait on a pool over its quota
   * as they wait on a stopped OSD, so a full pool turns the timeout into NO_SPACE.
   */
  private async explain(op: string, e: unknown): Promise<never> {
    if (op === 'pool_status' || !(e instanceof HavenError) || e.code !== 'RBD_TIMEOUT') throw e;
    const st = await this.send('pool_status', {}).catch(() => null);
    if (st?.reply.full === true) {
      throw poolFull(
        this.o.location.pool,
        Number(st.reply.quotaBytes ?? 0),
        Number(st.reply.usedBytes ?? 0),
        e,
      );
    }
    throw e;
  }

  async close(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    this.starting = undefined;
    if (!child || child.exitCode !== null) return;
    this.killed.add(child);
    child.stdin.end();
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  private async send(op: string, args: Record<string, unknown>, payload?: Buffer) {
    await this.hello();
    const child = this.child;
    if (!child) throw this.brokerGone('the broker is not running');
    const id = this.nextId++;
    const header = Buffer.from(
      JSON.stringify({ ...args, id, op, ...(payload ? { len: payload.length } : {}) }),
    );
    const size = Buffer.alloc(4);
    size.writeUInt32BE(header.length);
    const answer = this.wait(id, op, child);
    child.stdin.write(size);
    child.stdin.write(header);
    if (payload?.length) child.stdin.write(payload);
    return answer;
  }

  private wait(id: number, op: string, child: object): Promise<{ reply: Reply; data: Buffer }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.kill();
        reject(timedOut(op, Math.round(this.deadlineMs / 1000)));
      }, this.deadlineMs);
      this.pending.set(id, {
        child,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    }).then((r) => {
      const { reply } = r as { reply: Reply; data: Buffer };
      if (reply.ok !== true) {
        throw brokerError(op, Number(reply.errno ?? 5), String(reply.type ?? ''), String(reply.error ?? ''));
      }
      return r as { reply: Reply; data: Buffer };
    });
  }

  private start(): Promise<Reply> {
    const l = this.o.location;
    const opts = {
      pool: l.pool,
      user: l.user,
      conf: l.conf ?? null,
      keyring: l.keyring,
      monHost: l.monitors?.join(',') ?? null,
      opTimeout: this.o.opTimeoutS,
      mountTimeout: this.o.mountTimeoutS,
    };
    const script = installPath('src', 'store', 'rbd', 'broker.py');
    const child = spawn(PYTHON, ['-I', '-B', script, JSON.stringify(opts)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    let stderr = '';
    this.pieces = [];
    this.buffered = 0;
    this.need = 4;
    // A broker that was replaced may still have bytes on its way: they are not the new one's.
    child.stdout.on('data', (b: Buffer) => {
      if (this.child === child) this.onData(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 8000) stderr += b.toString('utf8');
    });
    child.stdin.on('error', () => {});
    child.once('exit', (code, signal) => {
      if (this.child === child) {
        this.child = undefined;
        this.starting = undefined;
      }
      const why = stderr.trim().split('\n').slice(-3).join(' ') || `exited (${signal ?? code})`;
      const died = !this.killed.has(child);
      if (died) this.o.log.warn('the Ceph broker died; the next request starts a new one', { why });
      for (const [id, p] of this.pending) {
        if (p.child !== child) continue;
        this.pending.delete(id);
        p.reject(this.brokerGone(why, died));
      }
    });
    this.o.log.debug('ceph broker started', { pid: child.pid, pool: l.pool, user: l.user });
    return new Promise<Reply>((resolve, reject) => {
      child.once('error', (e: NodeJS.ErrnoException) => {
        reject(
          e.code === 'ENOENT'
            ? new HavenError(
                'TOOL_MISSING',
                `${PYTHON} is missing: the rbd store needs Ceph's Python bindings`,
                {
                  kind: 'unavailable',
                  hint: 'Install ceph-common (it brings python3-rados and python3-rbd): apt-get install ceph-common',
                },
              )
            : e,
        );
      });
      this.pending.set(0, {
        child,
        resolve: ({ reply }) => {
          clearTimeout(timer);
          if (reply.ok === true) resolve(reply);
          else {
            this.kill();
            reject(this.connectFailed(reply));
          }
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const timer = setTimeout(() => {
        this.pending.delete(0);
        this.kill();
        reject(timedOut('connecting', Math.round(this.deadlineMs / 1000)));
      }, this.deadlineMs);
    });
  }

  /**
   * Replies arrive in pipe-sized pieces (64 KiB): they are kept as a list and joined once a
   * whole frame is there (`need` bytes), so a 4 MiB read costs one copy, not one per piece.
   */
  private onData(b: Buffer): void {
    this.pieces.push(b);
    this.buffered += b.length;
    while (this.buffered >= this.need) {
      const [first] = this.pieces;
      const input = this.pieces.length === 1 && first ? first : Buffer.concat(this.pieces, this.buffered);
      this.pieces = [input];
      const n = input.readUInt32BE(0);
      if (input.length < 4 + n) {
        this.need = 4 + n;
        return;
      }
      const reply = JSON.parse(input.subarray(4, 4 + n).toString('utf8')) as Reply;
      const len = typeof reply.len === 'number' ? reply.len : 0;
      if (input.length < 4 + n + len) {
        this.need = 4 + n + len;
        return;
      }
      const rest = input.subarray(4 + n + len);
      // A frame that ends the input is handed on as it is; one followed by more is copied, so
      // that the data kept does not hold the rest of the input alive.
      const frame = input.subarray(4 + n, 4 + n + len);
      const data = rest.length ? Buffer.from(frame) : frame;
      this.pieces = rest.length ? [rest] : [];
      this.buffered = rest.length;
      this.need = 4;
      const id = Number(reply.id);
      const p = this.pending.get(id);
      this.pending.delete(id);
      p?.resolve({ reply, data });
    }
  }

  private kill(): void {
    const child = this.child;
    this.child = undefined;
    this.starting = undefined;
    if (child && child.exitCode === null) {
      this.killed.add(child);
      child.kill('SIGKILL');
    }
  }

  private brokerGone(why: string, died = false): HavenError {
    const missingBindings = /No module named '(rados|rbd)'/.test(why);
    if (missingBindings)
      return new HavenError(
        'TOOL_MISSING',
        "Ceph's Python bindings (python3-rados, python3-rbd) are not installed",
        {
          kind: 'unavailable',
          hint: 'Install ceph-common: apt-get install ceph-common',
        },
      );
    return rbdError(
      'RBD_FAILED',
      'io',
      `the Ceph broker stopped: ${why}`,
      'See the message; run again (the broker is restarted).',
      died ? { brokerDied: true } : undefined,
    );
  }

  private connectFailed(reply: Reply): HavenError {
    const errno = Number(reply.errno ?? 5);
    const l = this.o.location;
    const where = l.monitors ? `monitors ${l.monitors.join(',')}` : `cluster ${l.cluster} (${l.conf})`;
    const message = String(reply.error ?? reply.type ?? '');
    if (errno === 2 && /pool|ioctx/i.test(`${reply.type} ${message}`))
      return rbdError(
        'RBD_POOL_NOT_FOUND',
        'not-found',
        `the pool ${l.pool} does not exist in ${where}`,
        `Create it: ceph osd pool create ${l.pool} && rbd pool init ${l.pool}`,
        { pool: l.pool },
      );
    if (errno === 1 || errno === 13)
      return rbdError(
        'RBD_PERMISSION_DENIED',
        'refused',
        `client.${l.user} may not use ${where}: ${message}`,
        `Check the keyring ${l.keyring} and the user's capabilities (ceph auth get client.${l.user}).`,
        { user: l.user },
      );
    return rbdError(
      'RBD_UNREACHABLE',
      'unavailable',
      `cannot connect to the Ceph ${where} as client.${l.user}: ${message} (errno ${errno})`,
      `Check that the monitors answer (ceph -s --connect-timeout 10 -c ${l.conf ?? 'CONF'}), the keyring ${l.keyring} and the network.`,
      { errno, user: l.user },
    );
  }
}
