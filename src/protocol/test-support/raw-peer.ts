/**
 * Test support only: a hand-driven protocol peer that writes arbitrary bytes (valid or not) and
 * reads the frames that come back, for tests that must send what a correct StreamSender never
 * would. Also a connected TCP socket pair on loopback.
 */
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DigestAlgorithm } from '../../core/digest.ts';
import type { DeltaMeta } from '../../store/types.ts';
import { decodeFrame, encodeExtentHead, encodeFrame, encodeJson, FrameDecoder } from '../codec.ts';
import { ExtentCompressor } from '../compression.ts';
import { extentDigests } from '../digests.ts';
import type { Frame, FrameBodies } from '../frames.ts';

export async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection');
  const client = connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = (await accepted) as [Socket];
  server.close();
  return [client, peer];
}

export class RawPeer {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];
  private waiters: Array<() => void> = [];
  private ended = false;
  error: Error | null = null;

  constructor(readonly stream: Duplex) {
    stream.on('data', (b: Buffer) => {
      try {
        for (const raw of this.decoder.push(b)) this.frames.push(decodeFrame(raw));
      } catch (e) {
        this.error = e as Error;
      }
      this.wake();
    });
    stream.on('end', () => {
      this.ended = true;
      this.wake();
    });
    stream.on('close', () => {
      this.ended = true;
      this.wake();
    });
    stream.on('error', (e) => {
      this.error ??= e;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(...parts: Buffer[]): void {
    for (const p of parts) this.stream.write(p);
  }

  sendFrame(f: Frame): void {
    this.send(...encodeFrame(f));
  }

  /** The next frame, or null when the stream ended first. */
  async next(): Promise<Frame | null> {
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.ended || this.error) return null;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Reads frames until one of `type` (skipping STAGED); fails on anything else. */
  async expect<K extends Frame['type']>(type: K): Promise<FrameBodies[K]> {
    for (;;) {
      const f = await this.next();
      if (!f)
        throw new Error(
          `stream ended while waiting for ${type}${this.error ? `: ${this.error.message}` : ''}`,
        );
      if (f.type === type) return f.body as FrameBodies[K];
      if (f.type === 'STAGED') continue;
      throw new Error(`expected ${type}, got ${f.type}: ${JSON.stringify(f.body)}`);
    }
  }

  /** Resolves once the peer closed the stream. */
  async closed(): Promise<void> {
    while (!(this.ended || this.error)) await new Promise<void>((r) => this.waiters.push(r));
  }

  async handshake(o: { token?: string; digests?: DigestAlgorithm[] } = {}): Promise<FrameBodies['WELCOME']> {
    this.send(
      encodeJson('HELLO', {
        protocol: 'haven-stream',
        versions: [1],
        software: 'raw-peer',
        compression: ['zstd', 'none'],
        digests: o.digests ?? ['blake3', 'sha256'],
        ...(o.token !== undefined ? { token: o.token } : {}),
      }),
    );
    return this.expect('WELCOME');
  }

  async open(meta: DeltaMeta): Promise<FrameBodies['OPENED']> {
    this.sendFrame({ type: 'OPEN', body: meta });
    return this.expect('OPENED');
  }

  /** A valid data EXTENT frame (optionally zstd), as bytes. */
  static dataExtent(
    alg: DigestAlgorithm,
    chunkSize: number,
    disk: number,
    offset: number,
    data: Buffer,
    zstd = false,
  ): Buffer[] {
    const { root } = extentDigests(alg, data, chunkSize);
    const packed = zstd ? new ExtentCompressor(1).compress(data) : null;
    const payload = packed ?? data;
    const head = encodeExtentHead(
      { disk, kind: 'data', encoding: packed ? 'zstd' : 'raw', offset, length: data.length, digest: root },
      payload.length,
    );
    return [head, payload];
  }
}
