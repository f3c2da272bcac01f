/**
 * The failover network mapping as the reports of activate, drill and restore print it (docs/recovery.md,
 * "Networks at the DR site"): one row per interface.
 */
import type { NicPlan } from '../recovery/index.ts';
import type { CliContext } from './context.ts';

/** Each interface of each server: where it was, what it joins here, its MAC (printed after the table). */
export function printNetworks(
  ctx: CliContext,
  rows: ReadonlyArray<{ server: string; networks?: NicPlan[] | undefined }>,
): void {
  const nics = rows.flatMap((r) => (r.networks ?? []).map((n) => ({ server: r.server, ...n })));
  if (!nics.length) return;
  ctx.print('Networks:');
  ctx.printTable(
    ['server', 'interface', 'at the primary', 'at this site', 'MAC', 'found here'],
    nics.map((n) => [
      n.server,
      n.interface,
      n.from,
      `${n.to}${n.mapped ? ' (mapped)' : ''}`,
      n.mac,
      n.state === undefined ? '-' : n.state === 'active' ? 'yes' : n.state.toUpperCase(),
    ]),
  );
}
