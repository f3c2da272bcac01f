/**
 * The daemon's API token: 32 random bytes (hex) in `<stateDir>/api-token`, created with mode
 * 0600 at the first start and read at every later one. Clients send it as
 * `Authorization: Bearer <token>`; Prometheus reads it with `authorization: { credentials_file }`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HavenError, ioError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';

export const TOKEN_FILE = 'api-token';

export function tokenPath(stateDir: string): string {
  return join(stateDir, TOKEN_FILE);
}

/** Reads the token, creating the file (0600) when there is none. */
export async function ensureToken(
  stateDir: string,
  log: Logger = silentLogger,
): Promise<{ token: string; path: string; created: boolean }> {
  const path = tokenPath(stateDir);
  await mkdir(stateDir, { recursive: true });
  try {
    const fh = await open(path, 'wx', 0o600);
    const token = randomBytes(32).toString('hex');
    try {
      await fh.writeFile(`${token}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    log.info('API token created', { path });
    return { token, path, created: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
      throw ioError(e as NodeJS.ErrnoException, `API token file ${path}`);
  }
  const mode = (await stat(path)).mode & 0o777;
  if (mode & 0o077) {
    // Someone loosened it: tighten it again rather than serve with a readable secret.
    await chmod(path, 0o600);
    log.warn('API token file was readable by others; set to 0600', { path, mode: mode.toString(8) });
  }
  const token = (await readFile(path, 'utf8')).trim();
  if (token.length < 32) {
    throw new HavenError('API_TOKEN_INVALID', `API token file ${path} holds no usable token`, {
      kind: 'config',
      hint: 'Remove the file; the daemon creates a new token at its next start.',
      details: { path },
    });
  }
  return { token, path, created: false };
}

/** Constant-time comparison of an Authorization header with the token. */
export function authorized(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}
