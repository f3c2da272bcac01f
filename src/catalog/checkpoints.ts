/**
 * Which libvirt checkpoint each generation came from (docs/design.md §6). An incremental copy to a target
 * starts from the checkpoint last delivered there, so that checkpoint must outlive every other;
 * the full checkpoint XML is kept so it can be redefined (`checkpoint-create --redefine`) when
 * libvirt lost its metadata (a transient domain restarted, a host reinstalled).
 *
 * `target` is whatever stable key the engine uses for a target (its URL or its store id).
 */
import { type CatalogDb, date, ms, nonEmpty, optionalText, type Row, rowReader, str, toJson } from './db.ts';
import { badValue, CatalogError, notFound } from './errors.ts';

export interface CheckpointRecord {
  server: string;
  name: string;
  domainUuid: string;
  /** When libvirt created it (the point in time of the copy taken with it). */
  createdAt: Date;
  /** The checkpoint this one follows, if any. */
  parent: string | null;
  /** Target devs (vda, vdb, ...) it covers. */
  disks: string[];
  /** The full `virsh checkpoint-dumpxml` output (with its <domain>), for redefinition. */
  xml: string;
  recordedAt: Date;
}

export interface CheckpointInput {
  server: string;
  name: string;
  domainUuid: string;
  createdAt: Date;
  parent?: string;
  disks: string[];
  xml: string;
}

export interface Delivery {
  checkpoint: CheckpointRecord;
  target: string;
  generationId: string;
  deliveredAt: Date;
}

const toCheckpoint = rowReader<CheckpointRecord>(
  'server name domain_uuid created_at:date parent disks:json xml recorded_at:date',
);

/** Rows of `checkpoints` joined with a delivery as d_target, d_generation, d_at. */
function toDelivery(r: Row): Delivery {
  return {
    checkpoint: toCheckpoint(r),
    target: str(r.d_target),
    generationId: str(r.d_generation),
    deliveredAt: date(r.d_at),
  };
}

export class CheckpointsTable {
  private readonly insert;
  private readonly one;
  private readonly all;
  private readonly ofServer;
  private readonly deliver;
  private readonly last;
  private readonly deliveriesOf;
  private readonly needed;
  private readonly deliveredIds;
  private readonly inflightUses;
  private readonly del;
  private readonly storesOf;
  private readonly delDeliveries;
  private readonly serverNames;

  constructor(private readonly c: CatalogDb) {
    this.insert = c.prepare(`
      INSERT INTO checkpoints (server, name, domain_uuid, created_at, parent, disks, xml, recorded_at)
      VALUES (@server, @name, @domainUuid, @createdAt, @parent, @disks, @xml, @recordedAt)`);
    this.one = c.prepare('SELECT * FROM checkpoints WHERE server = ? AND name = ?');
    this.all = c.prepare('SELECT * FROM checkpoints ORDER BY server, created_at DESC, id DESC');
    this.ofServer = c.prepare('SELECT * FROM checkpoints WHERE server = ? ORDER BY created_at DESC, id DESC');
    this.deliver = c.prepare(`
      INSERT INTO deliveries (checkpoint_id, target, generation_id, delivered_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (checkpoint_id, target) DO UPDATE SET
        generation_id = excluded.generation_id, delivered_at = excluded.delivered_at`);
    const delivered = `SELECT c.*, d.target AS d_target, d.generation_id AS d_generation, d.delivered_at AS d_at
      FROM deliveries d JOIN checkpoints c ON c.id = d.checkpoint_id`;
    this.last = c.prepare(`${delivered} WHERE c.server = ? AND d.target = ?
      ORDER BY d.delivered_at DESC, c.created_at DESC, c.id DESC LIMIT 1`);
    this.deliveriesOf = c.prepare(`${delivered} WHERE c.server = ? AND c.name = ? ORDER BY d.target`);
    // The newest delivery per target of one server: the bases of its next incremental copies.
    this.needed = c.prepare(`
      SELECT d.target AS target, (
        SELECT d2.checkpoint_id FROM deliveries d2 JOIN checkpoints c2 ON c2.id = d2.checkpoint_id
        WHERE c2.server = @server AND d2.target = d.target
        ORDER BY d2.delivered_at DESC, c2.created_at DESC, c2.id DESC LIMIT 1
      ) AS checkpoint_id
      FROM deliveries d JOIN checkpoints c ON c.id = d.checkpoint_id
      WHERE c.server = @server GROUP BY d.target`);
    this.deliveredIds = c.prepare(`SELECT DISTINCT d.checkpoint_id AS id FROM deliveries d
      JOIN checkpoints c ON c.id = d.checkpoint_id WHERE c.server = ?`);
    this.inflightUses = c.prepare('SELECT checkpoint, incremental_from FROM inflight WHERE server = ?');
    this.del = c.prepare('DELETE FROM checkpoints WHERE server = ? AND name = ?');
    this.storesOf = c.prepare(`SELECT d.target AS target, max(d.delivered_at) AS at FROM deliveries d
      JOIN checkpoints c ON c.id = d.checkpoint_id WHERE c.server = ? GROUP BY d.target ORDER BY d.target`);
    this.delDeliveries = c.prepare(`DELETE FROM deliveries WHERE target = ?
      AND checkpoint_id IN (SELECT id FROM checkpoints WHERE server = ?)`);
    this.serverNames = c.prepare('SELECT DISTINCT server FROM checkpoints ORDER BY server');
  }

  /** Servers with recorded checkpoints. */
  servers(): string[] {
    return this.c.read(() => (this.serverNames.all() as { server: string }[]).map((r) => r.server));
  }

  /** The targets (stores) the server's checkpoints were delivered to, each with its last delivery. */
  stores(server: string): Array<{ target: string; lastDeliveredAt: Date }> {
    return this.c.read(() =>
      (this.storesOf.all(server) as Row[]).map((r) => ({
        target: str(r.target),
        lastDeliveredAt: date(r.at),
      })),
    );
  }

  /**
   * Forgets every delivery of the server's checkpoints to `target`: nothing there is a base any
   * more, so `unneeded` lists what only that target kept. Returns how many deliveries went.
   */
  forgetDeliveries(server: string, target: string): number {
    return this.c.write(() => this.delDeliveries.run(target, server).changes);
  }

  /**
   * Records a checkpoint. Recording the same one again (same server, name, uuid and time) is a
   * no-op; a different checkpoint under a taken name is CATALOG_CHECKPOINT_EXISTS.
   */
  record(input: CheckpointInput): CheckpointRecord {
    if (!Array.isArray(input.disks) || input.disks.some((d) => typeof d !== 'string' || d === '')) {
      throw badValue('checkpoint disks', input.disks, 'a list of target device names');
    }
    const row = {
      server: nonEmpty('server name', input.server),
      name: nonEmpty('checkpoint name', input.name),
      domainUuid: nonEmpty('domain uuid', input.domainUuid),
      createdAt: ms(input.createdAt),
      parent: optionalText('parent checkpoint', input.parent),
      disks: toJson(input.disks),
      xml: nonEmpty('checkpoint XML', input.xml),
      recordedAt: Date.now(),
    };
    return this.c.write(() => {
      const existing = this.one.get(row.server, row.name) as Row | undefined;
      if (existing) {
        if (existing.domain_uuid === row.domainUuid && existing.created_at === row.createdAt) {
          return toCheckpoint(existing);
        }
        throw new CatalogError(
          'CATALOG_CHECKPOINT_EXISTS',
          `checkpoint ${row.name} of ${row.server} is already recorded for another domain or time`,
          {
            kind: 'conflict',
            hint: 'Checkpoint names must be unique per server; forget the old record first if libvirt reused the name.',
            details: { server: row.server, name: row.name },
          },
        );
      }
      this.insert.run(row);
      return toCheckpoint(this.one.get(row.server, row.name) as Row);
    });
  }

  get(server: string, name: string): CheckpointRecord | undefined {
    return this.c.read(() => {
      const r = this.one.get(server, name) as Row | undefined;
      return r ? toCheckpoint(r) : undefined;
    });
  }

  /** Newest first; one server's or all. */
  list(server?: string): CheckpointRecord[] {
    return this.c.read(() =>
      ((server === undefined ? this.all.all() : this.ofServer.all(server)) as Row[]).map(toCheckpoint),
    );
  }

  /** Records that the generation made from this checkpoint is committed at `target`. */
  markDelivered(server: string, name: string, target: string, generationId: string, at?: Date): Delivery {
    const t = nonEmpty('target', target);
    const g = nonEmpty('generation id', generationId);
    const when = ms(at);
    return this.c.write(() => {
      const cp = this.one.get(server, name) as Row | undefined;
      if (!cp) throw notFound('checkpoint', `${name} of ${server}`, { server, name });
      this.deliver.run(cp.id, t, g, when);
      return { checkpoint: toCheckpoint(cp), target: t, generationId: g, deliveredAt: new Date(when) };
    });
  }

  /** The checkpoint the next incremental copy of `server` to `target` starts from. */
  lastDelivered(server: string, target: string): Delivery | undefined {
    return this.c.read(() => {
      const r = this.last.get(server, target) as Row | undefined;
      return r ? toDelivery(r) : undefined;
    });
  }

  deliveries(server: string, name: string): Delivery[] {
    return this.c.read(() => (this.deliveriesOf.all(server, name) as Row[]).map(toDelivery));
  }

  /**
   * Checkpoints of `server` that no target needs: not the last delivered to any target (only
   * `targets` count when given, e.g. those still configured) and not used by an in-flight delta.
   * Never-delivered checkpoints count as unneeded only when recorded before `olderThan`, so a
   * run that has just created one is not robbed of it.
   */
  unneeded(server: string, options: { targets?: string[]; olderThan?: Date } = {}): CheckpointRecord[] {
    const cutoff = ms(options.olderThan, Number.NEGATIVE_INFINITY);
    return this.c.read(() => {
      const keep = new Set<number>();
      for (const r of this.needed.all({ server }) as { target: string; checkpoint_id: number }[]) {
        if (!options.targets || options.targets.includes(r.target)) keep.add(r.checkpoint_id);
      }
      const busy = new Set<string>();
      for (const r of this.inflightUses.all(server) as Row[]) {
        busy.add(str(r.checkpoint));
        if (r.incremental_from) busy.add(str(r.incremental_from));
      }
      const delivered = new Set((this.deliveredIds.all(server) as { id: number }[]).map((r) => r.id));
      return (this.ofServer.all(server) as Row[])
        .filter((r) => !keep.has(r.id as number) && !busy.has(str(r.name)))
        .filter((r) => delivered.has(r.id as number) || (r.recorded_at as number) < cutoff)
        .map(toCheckpoint);
    });
  }

  /**
   * Forgets a checkpoint and its deliveries (after it was deleted from libvirt). Refused while an
   * in-flight delta uses it. Returns false when it was not recorded.
   */
  forget(server: string, name: string): boolean {
    return this.c.write(() => {
      for (const r of this.inflightUses.all(server) as Row[]) {
        if (r.checkpoint === name || r.incremental_from === name) {
          throw new CatalogError(
            'CATALOG_CHECKPOINT_IN_USE',
            `checkpoint ${name} of ${server} is used by an in-flight delta`,
            {
              kind: 'conflict',
              hint: 'Let the interrupted copy resume (or clear its in-flight record) before deleting the checkpoint.',
              details: { server, name },
            },
          );
        }
      }
      return this.del.run(server, name).changes > 0;
    });
  }
}
