/**
 * Schedule arithmetic for the daemon's scheduler (pure; the timers are in daemon/scheduler.ts).
 * Fire times come from the configuration's `nextRun` (croner, in the configured time zone).
 */
import { nextRun } from '../core/config.ts';

/** More fire times than this between two looks means "many": the newest is taken as now. */
const MAX_STEPS = 100_000;

/**
 * The newest fire time in (lastFireAt, now], or null when none fell in between: a run the
 * daemon missed while it was down. It runs once, however many fire times were missed.
 */
export function missedFire(
  schedule: string,
  timeZone: string | undefined,
  lastFireAt: Date,
  now: Date,
): Date | null {
  let fire = nextRun(schedule, timeZone, lastFireAt);
  if (!fire || fire.getTime() > now.getTime()) return null;
  for (let i = 0; i < MAX_STEPS; i++) {
    const next = nextRun(schedule, timeZone, fire);
    if (!next || next.getTime() > now.getTime()) return fire;
    fire = next;
  }
  return now;
}
