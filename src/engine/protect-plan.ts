/**
 * A dry run (`--dry-run`): what a run would read and send, and from which base, asked of the target
 * and libvirt without changing either: no point in time is taken, no lost checkpoint redefined,
 * nothing recorded. A target without a store answers nothing (`connect` resolves to null).
 */
import { checkName } from '../core/names.ts';
import { getServer } from '../virt/index.ts';
import { trustedBase } from './base.ts';
import { firstContact, inflightOf, retryPolicy } from './contact.ts';
import { type PlanOptions, type ProtectPlan, protectedDisks, resyncReason } from './replicate.ts';
import { diskMode } from './source.ts';

/** Dry run: what a run would read and send, and from which base. Changes nothing anywhere. */
export async function planProtect(o: PlanOptions): Promise<ProtectPlan> {
  const log = o.log.child({ server: o.server });
  checkName('server', o.server);
  const server = await getServer(o.virsh, o.server, { log });
  const disks = protectedDisks(server);
  const { sender, newest, resync: asked } = await firstContact(o.connect, server.name, retryPolicy(o, log));
  const storeId = sender?.store.id ?? null;
  await sender?.close();
  const previous = new Map((newest?.disks ?? []).map((d) => [d.name, d.size]));
  const resync = resyncReason(o, newest, asked, log);
  const base = resync
    ? undefined
    : await trustedBase(o.virsh, server, newest, { catalog: o.catalog, log, readOnly: true });
  return {
    server: server.name,
    target: o.targetLabel,
    storeId,
    state: server.state,
    consistency: o.consistency ?? 'live',
    newest: newest && {
      id: newest.id,
      seq: newest.seq,
      pointInTime: newest.pointInTime,
      takenAt: newest.takenAt,
    },
    base: base?.name,
    ...(resync ? { resync } : {}),
    disks: disks.map((d) => ({
      name: d.name,
      target: d.target,
      size: d.size,
      format: d.format,
      mode: diskMode(d, previous, Boolean(base?.disks.has(d.target) && d.format === 'qcow2')),
    })),
    resumeJob: storeId !== null && inflightOf(o.catalog, server.name, storeId, newest)?.kind === 'resume',
  };
}
