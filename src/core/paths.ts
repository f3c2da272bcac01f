/**
 * Where Haven keeps its own files on a host. Each can be moved with an environment variable so
 * tests and unprivileged trials run in a scratch directory.
 *
 * The run directory holds NBD sockets and backup scratch files: QEMU runs as `libvirt-qemu` and
 * must be able to create files there (docs/design.md §8), so it is created world-writable with the
 * sticky bit, like /tmp.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export interface HavenPaths {
  /** Configuration file (HAVEN_CONFIG). */
  config: string;
  /** Catalog, API token, schedule state (HAVEN_STATE_DIR). */
  stateDir: string;
  /** Sockets, scratch files, temporary mounts (HAVEN_RUN_DIR). */
  runDir: string;
  /** One log file per run (HAVEN_LOG_DIR). */
  logDir: string;
}

export function havenPaths(env: NodeJS.ProcessEnv = process.env): HavenPaths {
  return {
    config: env.HAVEN_CONFIG ?? '/etc/haven/haven.yaml',
    stateDir: env.HAVEN_STATE_DIR ?? '/var/lib/haven',
    runDir: env.HAVEN_RUN_DIR ?? '/var/lib/haven/run',
    logDir: env.HAVEN_LOG_DIR ?? '/var/log/haven',
  };
}

/** Creates the run directory (and a named subdirectory) so that QEMU can write into it. */
export function ensureRunDir(runDir: string, sub?: string): string {
  mkdirSync(runDir, { recursive: true });
  chmodSync(runDir, 0o1777);
  if (!sub) return runDir;
  const dir = join(runDir, sub);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o1777);
  return dir;
}
