/**
 * What every command gets: verbosity, the logger, paths, output helpers for tables and --json,
 * and a per-run log file for commands that do work.
 */
import { join } from 'node:path';
import Table from 'cli-table3';
import type { HavenConfig } from '../core/config.ts';
import { createLogger, type Level, type RootLogger } from '../core/log.ts';
import { type HavenPaths, havenPaths } from '../core/paths.ts';
import type { ProgressMode } from './progress-bar.ts';

export interface GlobalOptions {
  verbose?: boolean;
  debug?: boolean;
  config?: string;
  logFile?: string;
  /** -q: no progress on stderr (bars or periodic lines); warnings and errors still show. */
  quiet?: boolean;
}

export class CliContext {
  readonly paths: HavenPaths;
  private rootLogger: RootLogger;
  private readonly consoleLevel: Level;

  constructor(
    readonly options: GlobalOptions,
    readonly stdout: NodeJS.WritableStream = process.stdout,
    readonly stderr: NodeJS.WritableStream = process.stderr,
  ) {
    const env = { ...process.env };
    if (options.config) env.HAVEN_CONFIG = options.config;
    this.paths = havenPaths(env);
    this.consoleLevel = options.debug ? 'debug' : options.verbose ? 'verbose' : 'info';
    this.rootLogger = createLogger({
      consoleLevel: this.consoleLevel,
      consoleWrite: (l) => this.stderr.write(`${l}\n`),
    });
  }

  private loadedConfig: HavenConfig | undefined;
  private workDone = false;

  /** True once the command opened a run log: it did work, and retention may follow (after-run.ts). */
  get didWork(): boolean {
    return this.workDone;
  }

  /**
   * The configuration. The default file is optional (commands work from flags alone); a file
   * named by --config or HAVEN_CONFIG must exist. The loader (yaml, the config schema, cron) is
   * imported only here: a receiver, started for every replication, never needs it.
   */
  async config(): Promise<HavenConfig> {
    if (!this.loadedConfig) {
      const { loadConfigIfPresent } = await import('../core/config.ts');
      this.loadedConfig = loadConfigIfPresent(this.paths.config, {
        required: Boolean(this.options.config || process.env.HAVEN_CONFIG),
      });
    }
    return this.loadedConfig;
  }

  /**
   * The zone listings show times in (cli/when.ts): the configuration's `timezone`, else the
   * host's. Commands that work from a store alone (a DR host may have no configuration, or a
   * broken one) use this, so a file they do not need cannot stop them.
   */
  async timeZone(): Promise<string | undefined> {
    try {
      return (await this.config()).timezone;
    } catch (e) {
      this.rootLogger.debug('times in the host’s zone: the configuration could not be read', { err: e });
      return undefined;
    }
  }

  get log(): RootLogger {
    return this.rootLogger;
  }

  /** True when stderr is a terminal: progress bars draw only then. */
  get interactive(): boolean {
    return Boolean((this.stderr as NodeJS.WriteStream).isTTY);
  }

  /**
   * How long work shows its progress on stderr: a bar on a terminal, periodic lines anywhere
   * else (a pipe, a log, cron), none with --json (machine output) or -q.
   */
  progressMode(json?: boolean): ProgressMode {
    if (this.options.quiet || json) return 'off';
    return this.interactive ? 'bar' : 'lines';
  }

  /**
   * Starts this command's log file (`<logDir>/<name>-<time>-<pid>.log`, or --log-file) and
   * returns the logger writing to it. Commands that change state call this once.
   */
  openRunLog(name: string): RootLogger {
    this.workDone = true;
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const filePath = this.options.logFile ?? join(this.paths.logDir, `${name}-${stamp}-${process.pid}.log`);
    this.rootLogger.close();
    this.rootLogger = createLogger({
      consoleLevel: this.consoleLevel,
      consoleWrite: (l) => this.stderr.write(`${l}\n`),
      filePath,
    });
    this.rootLogger.debug('run log opened', { argv: process.argv.slice(2), pid: process.pid });
    return this.rootLogger;
  }

  print(text: string): void {
    this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  printJson(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** A plain table for listings. Cells are strings already formatted by the caller. */
  printTable(head: string[], rows: string[][]): void {
    const t = new Table({
      head,
      style: { head: [], border: [], compact: true },
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const r of rows) t.push(r);
    this.print(t.toString());
  }

  close(): void {
    this.rootLogger.close();
  }
}
