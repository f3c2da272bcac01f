/**
 * `haven failback --follow`: replication in the other direction (issue 15; docs/continuous.md
 * "Planned switchover"). While the server runs at the DR site (after `haven switchover` or an
 * activation), a live pass every interval sends what the DR copy wrote since the previous pass
 * into the primary's own images, incremental from that pass's checkpoint (its bitmaps) and
 * proven against the primary's marker bitmap like every failback pass. The primary's disks stay
 * a few seconds to minutes behind the DR copy, as a DRBD secondary's would, so the final
 * `haven failback` sends only the last interval's writes.
 *
 * Stopping (Ctrl-C, SIGTERM) ends the loop between passes; a pass in flight finishes first (a
 * pass cut short would leave the primary without a marker, and the next one would compare every
 * chunk; a second Ctrl-C ends the process at once). The DR copy keeps running and stays active;
 * `failback.json` records where the primary stands. A pass that
 * fails (a broken link) is logged and the next interval tries again. Only the newest pass's
 * checkpoint is kept on the DR copy besides the activation's, so bitmaps do not pile up.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { asHavenError } from '../../core/errors.ts';
import { deleteCheckpoint } from '../../virt/index.ts';
import { recoveryError } from '../errors.ts';
import type { FailbackResult } from './failback.ts';
import { type FailbackRun, isRunning, runPass } from './pass.ts';

/** Passes kept in the result: the newest ones (a follow may make thousands). */
const KEEP_PASSES = 20;

export async function followDrCopy(run: FailbackRun, t0: number): Promise<FailbackResult> {
  const { o, drDomain, log, result } = run;
  const follow = o.follow;
  if (!follow) throw recoveryError('FAILBACK_INTERNAL', 'internal', 'followDrCopy without follow');
  if (!(await isRunning(o.virsh, drDomain)))
    throw recoveryError('FAILBACK_NOT_RUNNING', 'conflict', `the DR copy ${drDomain} is not running`, {
      hint: `Nothing changes at the DR site while it is off: finish with \`haven failback ${o.server} --store ${o.store.location} --to ${o.to}\`.`,
      details: { domain: drDomain },
    });
  const activation = run.base.drPoint;
  const following: NonNullable<FailbackResult['following']> = { passes: 0, ended: 'stopped' };
  result.following = following;
  log.info('following the DR copy: a live pass every interval', { intervalMs: follow.intervalMs });
  // Passes run to their end whatever the signal says (above); `base` is carried back after each.
  const passes: FailbackRun = { ...run, o: { ...o, signal: undefined } };
  while (!o.signal?.aborted) {
    const previous = run.base.drPoint;
    try {
      await runPass(passes, 'live');
      run.base = passes.base;
      following.passes++;
      delete following.lastError;
      const pass = result.passes.at(-1);
      if (pass) follow.onPass?.(pass);
      if (result.passes.length > KEEP_PASSES) result.passes.splice(0, result.passes.length - KEEP_PASSES);
      if (previous && previous !== activation && previous !== run.base.drPoint)
        await dropCheckpoint(run, previous);
    } catch (e) {
      if (o.signal?.aborted) break;
      const err = asHavenError(e);
      following.lastError = `${err.code}: ${err.message}`;
      log.warn('a follow pass failed; the next interval tries again', { err });
    }
    if (!(await isRunning(o.virsh, drDomain))) {
      following.ended = 'dr-copy-stopped';
      log.info('the DR copy stopped: following ends', { domain: drDomain });
      break;
    }
    await pause(follow.intervalMs, o.signal);
  }
  result.seconds = (Date.now() - t0) / 1000;
  return result;
}

/** A pass's checkpoint, once the next pass moved the base past it: from libvirt and the directory. */
async function dropCheckpoint(run: FailbackRun, name: string): Promise<void> {
  try {
    await deleteCheckpoint(run.o.virsh, run.drDomain, name, { log: run.log });
    await rm(join(run.dir, `checkpoint-${name}.xml`), { force: true });
  } catch (e) {
    run.log.warn('could not delete an earlier pass’s checkpoint', { checkpoint: name, err: e });
  }
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
