/**
 * Live updates for server-sent-event clients (`GET /api/progress`): run progress from the job
 * runner and every event written to the catalog, as `event: <kind>` + one JSON `data:` line.
 * A slow client is dropped rather than buffered without bound, and the streams open at once are
 * capped per client address and in total (`daemon.progress_streams[_per_client]`): each holds a
 * socket and up to MAX_BUFFERED bytes, and a token holder could otherwise open thousands.
 */
import type { ServerResponse } from 'node:http';
import { PeerGate, type PeerLimits, type Refusal } from '../core/peer-limits.ts';

const MAX_BUFFERED = 1024 * 1024;

export class EventHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly heartbeat: NodeJS.Timeout;
  private readonly gate: PeerGate;

  /** `limits` is read at each new stream, so a reloaded configuration applies to the next one. */
  constructor(limits: () => PeerLimits, heartbeatMs = 15_000) {
    this.gate = new PeerGate(limits, 'progress streams');
    // A comment line keeps proxies from closing an idle stream.
    this.heartbeat = setInterval(() => this.write(': keep-alive\n\n'), heartbeatMs);
    this.heartbeat.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Takes a place for a stream from `client` (then add() it), or says which limit refused. */
  reserve(client: string): Refusal | null {
    return this.gate.admit(client);
  }

  /**
   * Takes over a response for which reserve(client) succeeded: SSE headers, then every publish
   * until the client goes, which gives the place back.
   */
  add(res: ServerResponse, client: string, initial: Array<{ kind: string; data: unknown }> = []): void {
    res.once('close', () => this.gate.release(client));
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': haven live updates\n\n');
    for (const m of initial) res.write(frame(m.kind, m.data));
    this.clients.add(res);
    res.on('close', () => this.clients.delete(res));
  }

  publish(kind: string, data: unknown): void {
    this.write(frame(kind, data));
  }

  private write(text: string): void {
    for (const res of this.clients) {
      if (res.writableLength > MAX_BUFFERED) {
        res.destroy();
        this.clients.delete(res);
        continue;
      }
      res.write(text);
    }
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}

function frame(kind: string, data: unknown): string {
  return `event: ${kind}\ndata: ${JSON.stringify(data)}\n\n`;
}
