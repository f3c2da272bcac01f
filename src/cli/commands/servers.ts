/**
 * `haven servers [name...]`: every libvirt domain with its state and devices (disks with size,
 * format and store disk name; cdroms with or without media).
 */
import type { Command } from 'commander';
import { formatBytes } from '../../core/units.ts';
import { getServers, listServers, type Server, Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { connectOption, examples } from '../options.ts';

function source(d: Server['disks'][number]): string {
  if (d.empty) return '(no media)';
  if (d.sourceType === 'volume') return `${d.pool}/${d.volume}${d.path ? ` (${d.path})` : ''}`;
  if (d.network) return `${d.network.protocol}:${d.network.name ?? ''}`;
  return d.path ?? '';
}

export function serverRows(servers: readonly Server[]): string[][] {
  const rows: string[][] = [];
  for (const s of servers) {
    const first = [s.name, s.state, s.persistent ? 'yes' : 'no (transient)'];
    if (s.disks.length === 0) rows.push([...first, '-', '', '', '', '', '', '']);
    s.disks.forEach((d, i) => {
      rows.push([
        ...(i === 0 ? first : ['', '', '']),
        d.target,
        d.device + (d.readonly ? ' (ro)' : ''),
        d.bus ?? '',
        d.format ?? '',
        d.virtualSize === undefined ? '' : formatBytes(d.virtualSize),
        source(d),
        d.storeName ?? '',
      ]);
    });
  }
  return rows;
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('servers')
    .description('list libvirt servers (domains): state, disks with size and format, cdroms')
    .argument('[name...]', 'only these servers (default: all)')
    .option('--json', 'print JSON instead of a table');
  connectOption(command);
  examples(command, [
    ['haven servers', 'every domain on this host with its disks and their store names'],
    ['haven servers web01 db01 --json', 'two servers, as JSON'],
    ['haven servers --connect qemu+ssh://root@kvm2/system', 'the servers of another host'],
  ]);
  command.action(async (names: string[], opts: { json?: boolean; connect?: string }) => {
    const ctx = context();
    const virsh = new Virsh({ uri: opts.connect, log: ctx.log });
    const servers =
      names.length > 0
        ? await getServers(virsh, names, { log: ctx.log })
        : await listServers(virsh, { log: ctx.log });
    if (opts.json) {
      ctx.printJson(servers);
      return;
    }
    if (servers.length === 0) {
      ctx.print(`no servers defined at ${virsh.uri}`);
      return;
    }
    ctx.printTable(
      ['SERVER', 'STATE', 'PERSISTENT', 'DEVICE', 'KIND', 'BUS', 'FORMAT', 'SIZE', 'SOURCE', 'STORE NAME'],
      serverRows(servers),
    );
  });
}
