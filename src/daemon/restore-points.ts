/**
 * The restore points of each server, as its targets hold them: every generation with the last
 * time a drill or activation tested it. Asked of each target over a dry-run session (the receiver
 * runs read-only: it creates nothing and completes no commit), one session per target and QUERY
 * per server (docs/stream-protocol.md §4.1), so what the dashboard shows is what the store itself
 * says, not what the primary remembers. Answers are kept for a minute: a dashboard refreshing
 * every few seconds must not start an ssh session to every target each time.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { asHavenError, HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { planSessionFactory, resolveTarget, type StoreCapacity, type TargetView } from '../jobs/index.ts';

type Generation = NonNullable<TargetView['newest']>;

export interface Tested {
  at: string;
  kind: 'drill' | 'activation';
  result: 'pass' | 'fail';
  seconds: number;
  /** Where this came from: the store's manifest, or (when it has none) the catalog's drill runs. */
  source: 'store' | 'catalog';
}

export interface RestorePoint {
  seq: number;
  id: string;
  takenAt: string;
  committedAt: string;
  mode: string;
  job: string;
  deltaBytes: number;
  sizeBytes: number;
  tested: Tested | null;
}

export interface PairRestorePoints {
  server: string;
  target: string;
  job: string | null;
  /** When the target answered. */
  askedAt: string;
  /** Newest first; null when the target could not be asked or lists only its newest. */
  generations: RestorePoint[] | null;
  capacity: StoreCapacity | null;
  error: { code: string; message: string; hint?: string } | null;
}

type Answer = { view: TargetView | null } | { error: HavenError };

interface Asked {
  at: number;
  answers: Promise<Map<string, Answer>>;
}

export interface RestorePointOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  log: Logger;
  /** How long an answer is reused. Default 60 s. */
  maxAgeMs?: number;
  /** How long a target may take to answer. Default 30 s. */
  timeoutMs?: number;
}

function timeout(ms: number, target: string): Promise<never> {
  return new Promise((_, reject) =>
    setTimeout(
      () =>
        reject(
          new HavenError('API_TARGET_TIMEOUT', `target ${target} did not answer in time`, {
            kind: 'unavailable',
            hint: 'Check that the target is reachable (`haven doctor`); the dashboard asks again in a minute.',
          }),
        ),
      ms,
    ).unref(),
  );
}

export class RestorePoints {
  private readonly asked = new Map<string, Asked>();

  constructor(private readonly o: RestorePointOptions) {}

  /** What each target says of its servers; `fresh` asks again even within the minute. */
  async list(
    pairs: ReadonlyArray<{ server: string; target: string; job: string | null }>,
    fresh = false,
  ): Promise<PairRestorePoints[]> {
    const byTarget = new Map<string, string[]>();
    for (const p of pairs) byTarget.set(p.target, [...(byTarget.get(p.target) ?? []), p.server]);
    const answers = new Map<string, { at: number; answers: Map<string, Answer> }>();
    await Promise.all(
      [...byTarget].map(async ([target, servers]) => {
        const a = this.ask(target, servers, fresh);
        answers.set(target, { at: a.at, answers: await a.answers });
      }),
    );
    return pairs.map((p) => {
      const t = answers.get(p.target)!;
      const answer = t.answers.get(p.server);
      const base = { server: p.server, target: p.target, job: p.job, askedAt: new Date(t.at).toISOString() };
      if (!answer || 'error' in answer) {
        const e = answer?.error ?? new HavenError('INTERNAL', 'no answer', { kind: 'internal' });
        return {
          ...base,
          generations: null,
          capacity: null,
          error: { code: e.code, message: e.message, hint: e.hint },
        };
      }
      const v = answer.view;
      return {
        ...base,
        generations: v === null ? [] : (v.generations?.map((g) => this.point(p.server, g)) ?? null),
        capacity: v?.capacity ?? null,
        error: null,
      };
    });
  }

  private ask(target: string, servers: string[], fresh: boolean): Asked {
    const key = `${target}\u0000${[...servers].sort().join('\u0000')}`;
    const maxAge = this.o.maxAgeMs ?? 60_000;
    // Answers past their minute are dropped, so what is kept stays as small as what is asked.
    for (const [k, a] of this.asked) if (Date.now() - a.at >= maxAge && k !== key) this.asked.delete(k);
    const cached = this.asked.get(key);
    if (cached && !fresh && Date.now() - cached.at < maxAge) return cached;
    const asked = { at: Date.now(), answers: this.query(target, servers) };
    this.asked.set(key, asked);
    // A failed target is asked again at the next request, not a minute later.
    void asked.answers.then((m) => {
      if ([...m.values()].some((a) => 'error' in a) && this.asked.get(key) === asked) this.asked.delete(key);
    });
    return asked;
  }

  private async query(target: string, servers: string[]): Promise<Map<string, Answer>> {
    const out = new Map<string, Answer>();
    try {
      const connect = planSessionFactory(resolveTarget(target, this.o.config()), { log: this.o.log });
      let timedOut = false;
      const opening = connect();
      // A session that opens after the deadline is closed at once, not left to linger.
      opening.then(
        (late) => {
          if (late && timedOut) void late.close().catch(() => {});
        },
        () => {},
      );
      const session = await Promise.race([
        opening,
        timeout(this.o.timeoutMs ?? 30_000, target).catch((e) => {
          timedOut = true;
          throw e;
        }),
      ]);
      try {
        for (const s of servers) out.set(s, { view: session ? await session.inspect(s) : null });
      } finally {
        await session?.close().catch(() => {});
      }
    } catch (e) {
      const error = asHavenError(e);
      this.o.log.verbose(`restore points: target ${target} could not be asked`, { err: error });
      for (const s of servers) if (!out.has(s)) out.set(s, { error });
    }
    return out;
  }

  /** A generation as the dashboard lists it, with its last test (the store's, else a drill's). */
  private point(server: string, g: Generation): RestorePoint {
    const last = [...g.tests].sort((a, b) => (a.at < b.at ? -1 : 1)).at(-1);
    let tested: Tested | null = last
      ? { at: last.at, kind: last.kind, result: last.result, seconds: last.seconds, source: 'store' }
      : null;
    if (!tested) {
      const drill = this.o.catalog.history
        .drills({ since: new Date(g.committedAt), server })
        .filter((d) => d.generationId === g.id)
        .at(-1);
      if (drill?.finishedAt) {
        tested = {
          at: drill.finishedAt.toISOString(),
          kind: 'drill',
          result: drill.status === 'ok' ? 'pass' : 'fail',
          seconds: (drill.durationMs ?? 0) / 1000,
          source: 'catalog',
        };
      }
    }
    return {
      seq: g.seq,
      id: g.id,
      takenAt: g.takenAt,
      committedAt: g.committedAt,
      mode: g.mode,
      job: g.job,
      deltaBytes: g.deltaBytes,
      sizeBytes: g.disks.reduce((n, d) => n + d.size, 0),
      tested,
    };
  }
}
