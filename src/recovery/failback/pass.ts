/**
 * One failback pass (failback.ts): the replication engine run from the DR copy to the primary's
 * `haven failback-receive`, which writes into the primary's own images. Shared by a failback
 * that finishes (failback.ts) and one that follows the DR copy (follow.ts).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { asHavenError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { type ProtectResult, protectServer } from '../../engine/index.ts';
import type { StreamSender } from '../../protocol/index.ts';
import { checkpointXml, domainState, isActiveState, type Virsh, VirtError } from '../../virt/index.ts';
import { recoveryError } from '../errors.ts';
import type { FailbackOptions, FailbackResult } from './failback.ts';
import { describeEndpoint, type parsePrimaryEndpoint, primarySessions } from './link.ts';
import { MARKER_PREFIX } from './sink.ts';

/** One failback in progress: what every pass needs, and where the primary stands. */
export interface FailbackRun {
  o: FailbackOptions;
  endpoint: ReturnType<typeof parsePrimaryEndpoint>;
  drDomain: string;
  dir: string;
  log: Logger;
  result: FailbackResult;
  base: { since: string | undefined; drPoint: string | undefined };
}

/** The arguments of the primary's `haven failback-receive` for one pass. */
function receiveArgs(run: FailbackRun, kind: 'live' | 'final', since: string | undefined): string[] {
  const { o, base } = run;
  return [
    'failback-receive',
    o.server,
    '--stdio',
    '--source-name',
    run.drDomain,
    ...(since && base.drPoint ? ['--since', since, '--dr-point', base.drPoint] : []),
    ...(kind === 'final' ? ['--final'] : []),
    ...(o.start === false ? ['--no-start'] : []),
    ...(o.primaryUri ? ['--connect', o.primaryUri] : []),
  ];
}

/** One pass through the engine, from the DR copy to the primary; records it and moves the base. */
export async function runPass(run: FailbackRun, kind: 'live' | 'final'): Promise<void> {
  const { o, log, result } = run;
  const opened: StreamSender[] = [];
  const started = Date.now();
  const send = (since: string | undefined) =>
    protectServer({
      server: run.drDomain,
      connect: primarySessions(
        run.endpoint,
        receiveArgs(run, kind, since),
        { ...o.link, log, compress: o.compress ?? 3 },
        opened,
      ),
      targetLabel: `primary ${describeEndpoint(run.endpoint)}`,
      virsh: o.virsh,
      runDir: o.runDir,
      job: `failback-${kind}`,
      copies: 1,
      consistency: 'live',
      // A paused guest cannot answer its agent.
      quiesce: kind === 'live',
      retries: 2,
      onProgress: (s) => o.onProgress?.({ ...s, pass: kind }),
      ...(o.signal ? { signal: o.signal } : {}),
      log,
    });
  let r: Awaited<ReturnType<typeof protectServer>>;
  try {
    r = await send(run.base.since);
  } catch (e) {
    if (!(asHavenError(e).code === 'STORE_BASE_MISMATCH' && run.base.since)) throw e;
    log.warn('the primary is not where this pass starts from: comparing every chunk', {
      err: asHavenError(e),
    });
    r = await send(undefined);
  }
  if (!('generation' in r))
    throw recoveryError('FAILBACK_INTERNAL', 'internal', 'the engine returned a plan');
  const res = r as ProtectResult;
  const wire = opened.reduce((n, s) => n + s.bytesOnWire + s.bytesReceived, 0);
  result.passes.push({
    pass: kind,
    mode: res.mode,
    pointInTime: res.pointInTime,
    dataBytes: res.disks.reduce((n, d) => n + d.dataBytes, 0),
    zeroBytes: res.disks.reduce((n, d) => n + d.zeroBytes, 0),
    wireBytes: wire,
    attempts: res.attempts,
    durationMs: Date.now() - started,
  });
  result.wireBytes += wire;
  // Kept for the next pass (or a later attempt): the checkpoint's XML, and where the primary is.
  await writeFile(
    join(run.dir, `checkpoint-${res.pointInTime}.xml`),
    await checkpointXml(o.virsh, run.drDomain, res.pointInTime),
  );
  run.base = { since: `${MARKER_PREFIX}${res.pointInTime}`, drPoint: res.pointInTime };
  if (kind === 'live') await writeFile(join(run.dir, 'failback.json'), `${JSON.stringify(run.base)}\n`);
  log.info(`${kind} pass done`, { mode: res.mode, wireBytes: wire, pointInTime: res.pointInTime });
}

export async function isRunning(virsh: Virsh, domain: string): Promise<boolean> {
  try {
    return isActiveState((await domainState(virsh, domain)).state);
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND') return false;
    throw e;
  }
}
