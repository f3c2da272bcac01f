/**
 * Limits on what network peers may hold and cause, for the listeners that face them (the TLS
 * receiver, the daemon's progress streams):
 * - `PeerGate` counts open places (connections, streams) per peer address and in total; a new
 *   one over either limit is refused, with the limit that refused it;
 * - `PeerWarnings` logs what a peer can cause at will (a refusal, a failed handshake) at most
 *   once per peer and kind per window, the rest counted and told with the next one, so a peer
 *   that loops cannot fill the log.
 * Memory is bounded by the limits and by MAX_TRACKED_PEERS.
 */
import type { Logger } from './log.ts';

export interface PeerLimits {
  /** Places held at once, all peers together. */
  total: number;
  /** Places held at once by one peer address. */
  perPeer: number;
}

export interface Refusal {
  /** Which limit refused: the peer's own, or the total. */
  over: 'peer' | 'total';
  message: string;
}

export class PeerGate {
  private readonly byPeer = new Map<string, number>();
  private count = 0;

  /**
   * `limits`: fixed, or read at each admission (a configuration that can be reloaded); `noun`:
   * what a place is, plural, for messages ("connections", "progress streams").
   */
  constructor(
    private readonly limits: PeerLimits | (() => PeerLimits),
    private readonly noun: string,
  ) {}

  get open(): number {
    return this.count;
  }

  /** Takes a place for `peer`: null when admitted, else which limit refused and why. */
  admit(peer: string): Refusal | null {
    const limits = typeof this.limits === 'function' ? this.limits() : this.limits;
    const mine = this.byPeer.get(peer) ?? 0;
    if (mine >= limits.perPeer) {
      return {
        over: 'peer',
        message: `${mine} ${this.noun} from ${peer} are open (at most ${limits.perPeer} per peer address)`,
      };
    }
    if (this.count >= limits.total) {
      return { over: 'total', message: `${this.count} ${this.noun} are open (at most ${limits.total})` };
    }
    this.byPeer.set(peer, mine + 1);
    this.count++;
    return null;
  }

  /** Gives back a place `peer` held. */
  release(peer: string): void {
    const mine = this.byPeer.get(peer) ?? 0;
    if (mine <= 1) this.byPeer.delete(peer);
    else this.byPeer.set(peer, mine - 1);
    this.count = Math.max(0, this.count - 1);
  }
}

const MAX_TRACKED_PEERS = 1024;

/** An IPv4 peer seen through an IPv6 socket is the same peer. */
export function peerAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

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
