/**
 * NbdPool: several connections to one export, used like one NbdClient. Only servers that
 * advertise NBD_FLAG_CAN_MULTI_CONN get more than one connection (proto.md: otherwise clients
 * SHOULD NOT multiplex over several connections); with that flag, a FLUSH on any connection
 * covers writes completed on all of them, so flush() first waits for every outstanding write.
 *
 * Each request (or each maxRequest-sized piece of a large one) goes to the usable connection with
 * the fewest pending requests.
 */
import type { NbdConnectOptions } from './client.ts';
import { NbdClient } from './client.ts';
import { checkTargetBuffer, connectionUnusable, requestError } from './errors.ts';
import type { BlockSize, TransmissionFlags } from './handshake.ts';
import type { BlockStatusResult } from './transmission.ts';

export interface NbdPoolOptions extends NbdConnectOptions {
  /** Connections to open when the server allows multi-conn (default 4). */
  connections?: number;
}

export class NbdPool {
  private readonly writes = new Set<Promise<unknown>>();
  private rr = 0;

  private constructor(readonly clients: readonly NbdClient[]) {}

  static async connect(o: NbdPoolOptions): Promise<NbdPool> {
    const first = await NbdClient.connect(o);
    const wanted = Math.max(1, o.connections ?? 4);
    if (wanted === 1 || !first.flags.canMultiConn) return new NbdPool([first]);
    const rest = await Promise.allSettled(Array.from({ length: wanted - 1 }, () => NbdClient.connect(o)));
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const opened = rest.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (failed) {
      await Promise.allSettled([first, ...opened].map((c) => c.close()));
      throw failed.reason;
    }
    return new NbdPool([first, ...opened]);
  }

  private get first(): NbdClient {
    return this.clients[0]!;
  }
  get exportName(): string {
    return this.first.exportName;
  }
  get size(): number {
    return this.first.size;
  }
  get flags(): TransmissionFlags {
    return this.first.flags;
  }
  get blockSize(): BlockSize {
    return this.first.blockSize;
  }
  get contexts(): ReadonlyMap<string, number> {
    return this.first.contexts;
  }
  get maxRequest(): number {
    return this.first.maxRequest;
  }
  /** True while at least one connection can take requests. */
  get usable(): boolean {
    return this.clients.some((c) => c.usable);
  }

  /** The usable connection with the fewest pending requests (round-robin among equals). */
  private pick(): NbdClient {
    let best: NbdClient | undefined;
    const n = this.clients.length;
    for (let i = 0; i < n; i++) {
      const c = this.clients[(this.rr + i) % n]!;
      if (c.usable && (!best || c.pendingCount < best.pendingCount)) best = c;
    }
    this.rr = (this.rr + 1) % n;
    if (!best) throw connectionUnusable(undefined, false);
    return best;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (
      !Number.isSafeInteger(length) ||
      length < 0 ||
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      offset + length > this.size
    ) {
      throw requestError(
        'NBD_BAD_RANGE',
        `read [${offset}, +${length}) is outside the export (size ${this.size})`,
      );
    }
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(offset, buf, 0, length);
    return buf;
  }

  async readInto(
    offset: number,
    target: Buffer,
    targetOffset = 0,
    length = target.length - targetOffset,
  ): Promise<void> {
    checkTargetBuffer(target, targetOffset, length);
    await this.spread(offset, length, (c, off, len) =>
      c.readInto(off, target, targetOffset + (off - offset), len),
    );
  }

  async write(offset: number, data: Buffer, o: { fua?: boolean } = {}): Promise<void> {
    await this.tracked(
      this.spread(offset, data.length, (c, off, len) =>
        c.write(off, data.subarray(off - offset, off - offset + len), o),
      ),
    );
  }

  async writeZeroes(
    offset: number,
    length: number,
    o: { noHole?: boolean; fua?: boolean; fastZero?: boolean } = {},
  ): Promise<void> {
    await this.tracked(this.spread(offset, length, (c, off, len) => c.writeZeroes(off, len, o)));
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.tracked(this.spread(offset, length, (c, off, len) => c.trim(off, len)));
  }

  /** Flushes after every write issued so far has been answered, on any connection. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.writes]);
    await this.pick().flush();
  }

  blockStatus(offset: number, length: number, o: { reqOne?: boolean } = {}): Promise<BlockStatusResult> {
    return this.pick().blockStatus(offset, length, o);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.clients.map((c) => c.close()));
  }

  private tracked(p: Promise<void>): Promise<void> {
    this.writes.add(p);
    const forget = () => this.writes.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Splits at the export's maximum request size and spreads the pieces over the connections. */
  private async spread(
    offset: number,
    length: number,
    one: (c: NbdClient, off: number, len: number) => Promise<void>,
  ): Promise<void> {
    const max = this.maxRequest;
    if (length <= max) {
      await one(this.pick(), offset, length);
      return;
    }
    const parts: Promise<void>[] = [];
    for (let off = offset; off < offset + length; off += max) {
      const len = Math.min(max, offset + length - off);
      parts.push(Promise.resolve().then(() => one(this.pick(), off, len)));
    }
    const results = await Promise.allSettled(parts);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
