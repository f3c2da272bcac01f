/**
 * Logging: human lines on stderr filtered by verbosity, and every line (debug included) as JSON
 * in a per-run log file, so a failed night can be read the next morning.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export type Level = 'error' | 'warn' | 'info' | 'verbose' | 'debug';
const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, verbose: 3, debug: 4 };

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  verbose(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds these fields to every line. */
  child(fields: Record<string, unknown>): Logger;
}

export interface LogSinkOptions {
  /** Highest level written to stderr. */
  consoleLevel: Level;
  /** Where the JSON log file goes, if anywhere. */
  filePath?: string;
  /** Writes console lines; stderr unless replaced (tests, progress bars). */
  consoleWrite?: (line: string) => void;
}

class Sink {
  private fd: number | undefined;
  constructor(readonly options: LogSinkOptions) {
    if (options.filePath) {
      mkdirSync(join(options.filePath, '..'), { recursive: true });
      this.fd = openSync(options.filePath, 'a', 0o640);
    }
  }

  write(level: Level, msg: string, fields: Record<string, unknown>): void {
    if (this.fd !== undefined) {
      const rec = { t: new Date().toISOString(), level, msg, ...fields };
      writeSync(this.fd, `${JSON.stringify(rec, jsonSafe)}\n`);
    }
    if (RANK[level] <= RANK[this.options.consoleLevel]) {
      const ctx = Object.entries(fields)
        .filter(([k]) => k !== 'err')
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, jsonSafe)}`)
        .join(' ');
      const prefix = level === 'info' ? '' : `${level}: `;
      const line = `${prefix}${msg}${ctx ? `  (${ctx})` : ''}`;
      (this.options.consoleWrite ?? ((l: string) => process.stderr.write(`${l}\n`)))(line);
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) {
    const e = value as Error & { code?: unknown };
    return { name: e.name, message: e.message, code: e.code };
  }
  return value;
}

class SinkLogger implements Logger {
  constructor(
    private readonly sink: Sink,
    private readonly fields: Record<string, unknown>,
  ) {}
  error(msg: string, f?: Record<string, unknown>) {
    this.sink.write('error', msg, { ...this.fields, ...f });
  }
  warn(msg: string, f?: Record<string, unknown>) {
    this.sink.write('warn', msg, { ...this.fields, ...f });
  }
  info(msg: string, f?: Record<string, unknown>) {
    this.sink.write('info', msg, { ...this.fields, ...f });
  }
  verbose(msg: string, f?: Record<string, unknown>) {
    this.sink.write('verbose', msg, { ...this.fields, ...f });
  }
  debug(msg: string, f?: Record<string, unknown>) {
    this.sink.write('debug', msg, { ...this.fields, ...f });
  }
  child(fields: Record<string, unknown>): Logger {
    return new SinkLogger(this.sink, { ...this.fields, ...fields });
  }
}

export interface RootLogger extends Logger {
  readonly filePath: string | undefined;
  close(): void;
}

export function createLogger(options: LogSinkOptions): RootLogger {
  const sink = new Sink(options);
  const root = new SinkLogger(sink, {}) as unknown as RootLogger;
  Object.defineProperty(root, 'filePath', { value: options.filePath });
  Object.defineProperty(root, 'close', { value: () => sink.close() });
  return root;
}

/** A logger that drops everything: the default for library code called without one. */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  verbose() {},
  debug() {},
  child() {
    return silentLogger;
  },
};
