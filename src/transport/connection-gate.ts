/**
 * How many TCP connections a listener holds, per peer address and in total, counted from the
 * moment a connection is accepted (a TLS handshake in progress counts: holding many of those is
 * the cheapest way to exhaust a listener). A connection over either limit is closed at once,
 * before any TLS work. Refusals and handshake failures are logged through a per-peer rate limit,
 * so a peer that opens connections in a loop cannot fill the log either.
 */
import type { Logger } from '../core/log.ts';

export interface ConnectionLimits {
  /** Connections open at once, all peers together. */
  total: number;
  /** Connections open at once from one peer address. */
  perPeer: number;
}

/**
 * A job sends each server over its own session and runs up to `parallel` (≤ 64) servers at
 * once; several jobs may share a target. Each session may buffer ~10 MiB (the receiver's frame
 * queue and pool), so the total also bounds the listener's memory.
 */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { total: 64, perPeer: 16 };

/** An IPv4 peer seen through an IPv6 socket is the same peer. */
export function peerAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export class ConnectionGate {
  private readonly byPeer = new Map<string, number>();
  private count = 0;

  constructor(private readonly limits: ConnectionLimits) {}

  get open(): number {
    return this.count;
  }

  /** Takes a place for a new connection from `peer`; null when admitted, else why not. */
  admit(peer: string): string | null {
    const mine = this.byPeer.get(peer) ?? 0;
    if (mine >= this.limits.perPeer) {
      return `${mine} connections from ${peer} are open (at most ${this.limits.perPeer} per peer address)`;
    }
    if (this.count >= this.limits.total) {
      return `${this.count} connections are open (at most ${this.limits.total})`;
    }
    this.byPeer.set(peer, mine + 1);
    this.count++;
    return null;
  }

  /** Gives back the place of a connection that closed. */
  release(peer: string): void {
    const mine = this.byPeer.get(peer) ?? 0;
    if (mine <= 1) this.byPeer.delete(peer);
    else this.byPeer.set(peer, mine - 1);
    this.count = Math.max(0, this.count - 1);
  }
}

/** Per-peer memory is bounded too: past this many peers, the rest share one entry. */
const MAX_TRACKED_PEERS = 1024;

/**
 * Warnings about peers, at most one of each kind per peer per `windowMs`; the ones held back are
 * counted and the count is told with the next warning of that kind about that peer.
 */
export class PeerWarnings {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(
    private readonly log: Logger,
    private readonly windowMs = 60_000,
  ) {}

  warn(peer: string, kind: string, message: string, fields: Record<string, unknown> = {}): void {
    const now = Date.now();
    this.prune(now);
    const id = `${kind} ${peer}`;
    const key = this.last.has(id) || this.last.size < MAX_TRACKED_PEERS ? id : `${kind} *`;
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.windowMs) {
      seen.held++;
      return;
    }
    const held = seen?.held ?? 0;
    this.last.set(key, { at: now, held: 0 });
    this.log.warn(held > 0 ? `${message} (and ${held} more like it since the last report)` : message, {
      peer,
      ...fields,
    });
  }

  private prune(now: number): void {
    if (this.last.size < MAX_TRACKED_PEERS) return;
    for (const [k, v] of this.last) if (now - v.at >= this.windowMs && v.held === 0) this.last.delete(k);
  }
}
