/**
 * Live updates for server-sent-event clients (`GET /api/progress`): run progress from the job
 * runner and every event written to the catalog, as `event: <kind>` + one JSON `data:` line.
 * A slow client is dropped rather than buffered without bound.
 */
import type { ServerResponse } from 'node:http';

const MAX_BUFFERED = 1024 * 1024;

export class EventHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(heartbeatMs = 15_000) {
    // A comment line keeps proxies from closing an idle stream.
    this.heartbeat = setInterval(() => this.write(': keep-alive\n\n'), heartbeatMs);
    this.heartbeat.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Takes over a response: SSE headers, then every publish until the client goes. */
  add(res: ServerResponse, initial: Array<{ kind: string; data: unknown }> = []): void {
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
