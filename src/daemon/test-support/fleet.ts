/**
 * Test support only: a catalog with the history of a small fleet, written through the catalog's
 * own API into a real SQLite file: three servers, two jobs over two targets (one ad hoc protect to
 * a third), failed and partial runs, two drills with passes and failures, and the targets' space
 * as their receivers reported it. The metrics and rules tests scrape it; what it holds is in
 * FLEET so they can check the numbers.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Catalog, openCatalog } from '../../catalog/catalog.ts';
import { type HavenConfig, parseConfig } from '../../core/config.ts';
import { createMetrics, type Metrics, type MetricsOptions } from '../metrics.ts';

export const FLEET_CONFIG = `
targets:
  dr:
    url: ssh://root@dr.example.com/srv/haven
  offsite:
    url: tls://offsite.example.com:8471
    tls: { ca: /etc/haven/offsite-ca.pem, token_file: /etc/haven/offsite.token }
jobs:
  nightly:
    servers: [web01, db01]
    targets: [dr, offsite]
    schedule: "30 1 * * *"
    rpo: 26h
  hourly:
    servers: [app01]
    target: dr
    schedule: "0 * * * *"
    rpo: 90m
drills:
  weekly:
    store: /srv/haven
    servers: ["*"]
    schedule: "0 4 * * 0"
    boot_marker: { serial: "login:" }
  monthly:
    store: /srv/haven
    servers: [db01]
    boot_marker: { agent: true }
`;

const MiB = 1024 * 1024;
const HOUR = 3_600_000;

export interface Fleet {
  catalog: Catalog;
  config: HavenConfig;
  selections: Map<string, string[]>;
  /** When the last run finished (every time in the fleet is before it). */
  now: Date;
  close(): void;
}

function copyRun(
  c: Catalog,
  o: { job?: string; at: number; results: Array<[string, string, 'ok' | 'failed', number, number?]> },
): void {
  const run = c.runs.start({
    kind: o.job ? 'job' : 'protect',
    job: o.job,
    trigger: 'schedule',
    at: new Date(o.at),
  });
  for (const [i, [server, target, status, sentMiB, freeMiB]] of o.results.entries()) {
    c.runs.recordServer(run.id, {
      server,
      target,
      status,
      mode: 'incremental',
      startedAt: new Date(o.at),
      // One after another, in the order listed.
      finishedAt: new Date(o.at + 120_000 + i * 1000),
      bytesRead: sentMiB * 2 * MiB,
      bytesSent: sentMiB * MiB,
      durationMs: 120_000,
      ...(status === 'ok' ? { copyAt: new Date(o.at), generationId: `${server}-${target}-${o.at}` } : {}),
      ...(status === 'failed'
        ? { errorCode: 'TRANSPORT_CONNECT_FAILED', errorMessage: 'connection refused' }
        : {}),
      ...(freeMiB === undefined ? {} : { storeTotalBytes: 1024 * 1024 * MiB, storeFreeBytes: freeMiB * MiB }),
    });
  }
  const failed = o.results.filter((r) => r[2] === 'failed').length;
  const status = failed === 0 ? 'ok' : failed === o.results.length ? 'failed' : 'partial';
  c.runs.finish(run.id, { status, at: new Date(o.at + 180_000) });
}

function drillRun(
  c: Catalog,
  drill: string,
  at: number,
  results: Array<[string, 'ok' | 'failed', number]>,
): void {
  const run = c.runs.start({ kind: 'drill', job: drill, trigger: 'schedule', at: new Date(at) });
  for (const [server, status, seconds] of results) {
    c.runs.recordServer(run.id, {
      server,
      target: '/srv/haven',
      status,
      durationMs: seconds * 1000,
      finishedAt: new Date(at + seconds * 1000),
    });
  }
  const failed = results.filter((r) => r[1] === 'failed').length;
  c.runs.finish(run.id, {
    status: failed === 0 ? 'ok' : failed === results.length ? 'failed' : 'partial',
    at: new Date(at + 600_000),
  });
}

/** Opens a catalog under HAVEN_TEST_ROOT and writes the fleet's history into it. */
export function fleetCatalog(now = new Date()): Fleet {
  const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, 'haven-t-fleet-'));
  const catalog = openCatalog(join(dir, 'catalog.sqlite'));
  const t0 = now.getTime() - 72 * HOUR;
  copyRun(catalog, {
    job: 'nightly',
    at: t0,
    results: [
      ['web01', 'dr', 'ok', 100, 900_000],
      ['db01', 'dr', 'ok', 300, 899_700],
      ['web01', 'offsite', 'ok', 100, 500_000],
      ['db01', 'offsite', 'ok', 300],
    ],
  });
  copyRun(catalog, {
    job: 'nightly',
    at: t0 + 24 * HOUR,
    results: [
      ['web01', 'dr', 'ok', 20, 899_600],
      ['db01', 'dr', 'failed', 0],
      ['web01', 'offsite', 'ok', 20, 499_900],
      ['db01', 'offsite', 'ok', 50, 499_850],
    ],
  });
  copyRun(catalog, {
    job: 'nightly',
    at: t0 + 48 * HOUR,
    results: [
      ['web01', 'dr', 'failed', 0],
      ['db01', 'dr', 'failed', 0],
      ['web01', 'offsite', 'failed', 0],
      ['db01', 'offsite', 'failed', 0],
    ],
  });
  for (let h = 0; h < 6; h++) {
    copyRun(catalog, {
      job: 'hourly',
      at: now.getTime() - (6 - h) * HOUR,
      results: [['app01', 'dr', h === 3 ? 'failed' : 'ok', 5, 899_000 - h]],
    });
  }
  copyRun(catalog, {
    at: now.getTime() - 30 * HOUR,
    results: [['app01', '/mnt/usb/haven', 'ok', 2048, 10_000]],
  });
  drillRun(catalog, 'weekly', t0 + 4 * HOUR, [
    ['web01', 'ok', 8],
    ['db01', 'ok', 25],
    ['app01', 'failed', 300],
  ]);
  drillRun(catalog, 'weekly', t0 + 52 * HOUR, [
    ['web01', 'ok', 7],
    ['db01', 'failed', 300],
    ['app01', 'ok', 12],
  ]);
  drillRun(catalog, 'monthly', t0 + 60 * HOUR, [['db01', 'ok', 31]]);
  catalog.events.append({
    type: 'rpo.breached',
    severity: 'error',
    message: 'db01 → dr is beyond its objective',
    server: 'db01',
    dedupKey: 'rpo:db01:dr',
  });
  return {
    catalog,
    config: parseConfig(FLEET_CONFIG, 'fleet.yaml', now),
    selections: new Map([
      ['nightly', ['web01', 'db01']],
      ['hourly', ['app01']],
    ]),
    now,
    close() {
      catalog.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The daemon's metrics over the fleet's catalog; what runs and when next as the daemon would say. */
export function fleetMetrics(
  fleet: Fleet,
  o: Partial<Pick<MetricsOptions, 'running' | 'nextRun'>> = {},
): Metrics {
  return createMetrics({
    config: () => fleet.config,
    catalog: fleet.catalog,
    selections: () => fleet.selections,
    running: o.running ?? (() => false),
    nextRun: o.nextRun ?? (() => null),
  });
}
