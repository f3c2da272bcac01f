/**
 * Waiting for a boot marker (config: `boot_marker`): a text on the serial console, or the guest
 * agent answering a ping. The console file is read incrementally, so memory stays bounded however
 * much the guest prints; the last few KiB are kept to explain a failure.
 */
import { open } from 'node:fs/promises';
import type { BootMarker } from '../core/config.ts';
import { agentPing, domainState, isActiveState, type Virsh, VirtError } from '../virt/index.ts';

export interface MarkerWaitOptions {
  virsh: Virsh;
  domain: string;
  marker: BootMarker;
  /** The serial console log the domain writes. */
  consoleLog: string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** How often the console is read (default 250 ms). */
  intervalMs?: number;
  /** How often libvirt is asked whether the domain still runs, or its agent answers (default 5 s). */
  stateEveryMs?: number;
}

export interface MarkerResult {
  seen: boolean;
  /** When not seen: why (timeout, the guest stopped, cancelled). */
  reason?: string;
  /** The end of the console output, for reports. */
  consoleTail: string;
}

const TAIL_BYTES = 4096;
const READ_BYTES = 64 * 1024;

/** Follows a growing file: `read(each)` hands over, piece by piece, what was appended since. */
export class FileFollower {
  private offset = 0;
  tail = '';

  constructor(private readonly path: string) {}

  async read(each: (piece: string) => void = () => {}): Promise<void> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(this.path, 'r');
    } catch {
      return;
    }
    try {
      const buf = Buffer.allocUnsafe(READ_BYTES);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        // latin1: one byte is one character, whatever the guest prints.
        const piece = buf.toString('latin1', 0, bytesRead);
        this.tail = (this.tail + piece).slice(-TAIL_BYTES);
        each(piece);
      }
    } finally {
      await fh.close();
    }
  }
}

/** Finds `needle` in a stream of pieces, across piece boundaries. */
export class TextMatcher {
  private carry = '';

  constructor(private readonly needle: string) {}

  push(piece: string): boolean {
    const hay = this.carry + piece;
    if (hay.includes(this.needle)) return true;
    this.carry = hay.slice(-Math.max(0, this.needle.length - 1));
    return false;
  }
}

export async function waitForBootMarker(o: MarkerWaitOptions): Promise<MarkerResult> {
  const deadline = Date.now() + o.timeoutMs;
  const follower = new FileFollower(o.consoleLog);
  const matcher = 'serial' in o.marker ? new TextMatcher(o.marker.serial) : undefined;
  const interval = o.intervalMs ?? 250;
  // Reading the console file is cheap; each libvirt question starts a virsh process. Asked every
  // 250 ms, those took a third of a slow DR host's CPU from the guest booting there (a drill
  // under nested TCG, test/serial/recovery-lvm.test.ts), so they are asked less often.
  const stateEvery = o.stateEveryMs ?? 5000;
  let nextState = 0;
  for (;;) {
    let seen = false;
    await follower.read((piece) => {
      if (matcher?.push(piece)) seen = true;
    });
    if (seen) return { seen: true, consoleTail: follower.tail };
    if (Date.now() < nextState && Date.now() < deadline && !o.signal?.aborted) {
      await new Promise((r) => setTimeout(r, interval));
      continue;
    }
    nextState = Date.now() + stateEvery;
    let state: string;
    try {
      state = (await domainState(o.virsh, o.domain)).state;
    } catch (e) {
      if (!(e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND')) throw e;
      state = 'gone';
    }
    if (state === 'gone' || !isActiveState(state as Parameters<typeof isActiveState>[0])) {
      await follower.read();
      return {
        seen: false,
        reason: `the guest stopped (${state}) before its boot marker`,
        consoleTail: follower.tail,
      };
    }
    if (!matcher) {
      const ping = await agentPing(o.virsh, o.domain, { timeoutMs: 2000 });
      if (ping.agent) return { seen: true, consoleTail: follower.tail };
    }
    if (o.signal?.aborted) return { seen: false, reason: 'cancelled', consoleTail: follower.tail };
    if (Date.now() >= deadline) {
      const what = matcher
        ? `${JSON.stringify((o.marker as { serial: string }).serial)} on the console`
        : 'an answer from the guest agent';
      return {
        seen: false,
        reason: `no ${what} within ${Math.round(o.timeoutMs / 1000)} s`,
        consoleTail: follower.tail,
      };
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}
