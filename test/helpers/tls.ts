/**
 * TLS for tests: a throwaway PKI made with the openssl CLI (a CA, a second untrusted CA, a server
 * certificate for 127.0.0.1/localhost, a client certificate and an intruder's), and a real
 * `haven receive --listen` process.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HAVEN_BIN } from '../../src/transport/index.ts';

const run = promisify(execFile);

async function openssl(dir: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

/**
 * ca.pem/otherca.pem, server.{pem,key}, client.{pem,key}, intruder.{pem,key} in `dir`, each valid
 * for 2 days; expired.{pem,key}: a server certificate for 127.0.0.1 that expired a day ago.
 * `serverIps`: further addresses the server certificate is valid for (a receiver in a network
 * namespace, test/helpers/shaped-link.ts).
 */
export async function makePki(dir: string, serverIps: readonly string[] = []): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'otherca']) {
    await openssl(dir, [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=haven-test-${ca}`,
    ]);
  }
  const leaf = async (name: string, ca: string, subj: string, ext: string[], days = '2') => {
    await openssl(dir, [
      'req',
      '-new',
      ...ec,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      subj,
      ...ext,
    ]);
    await openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      days,
      '-copy_extensions',
      'copyall',
      '-out',
      `${name}.pem`,
    ]);
  };
  await leaf('server', 'ca', '/CN=localhost', [
    '-addext',
    `subjectAltName=${['127.0.0.1', ...serverIps].map((ip) => `IP:${ip}`).join(',')},DNS:localhost`,
    '-addext',
    'extendedKeyUsage=serverAuth',
  ]);
  await leaf('client', 'ca', '/CN=haven-test-sender', ['-addext', 'extendedKeyUsage=clientAuth']);
  await leaf('intruder', 'otherca', '/CN=haven-test-intruder', ['-addext', 'extendedKeyUsage=clientAuth']);
  // A negative validity puts notAfter in the past (OpenSSL 3.0 has no -not_after).
  await leaf(
    'expired',
    'ca',
    '/CN=localhost',
    ['-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'extendedKeyUsage=serverAuth'],
    '-1',
  );
}

export interface Listener {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

/**
 * Starts `haven receive --listen 127.0.0.1:0` on `store` with the PKI in `pkiDir` (its server
 * certificate, or `certName`.{pem,key}).
 */
export async function startListener(
  pkiDir: string,
  store: string,
  extra: string[],
  env: NodeJS.ProcessEnv = {},
  certName = 'server',
): Promise<Listener> {
  const child = spawn(
    process.execPath,
    [
      HAVEN_BIN,
      'receive',
      '--listen',
      '127.0.0.1:0',
      '--store',
      store,
      '--tls-cert',
      join(pkiDir, `${certName}.pem`),
      '--tls-key',
      join(pkiDir, `${certName}.key`),
      ...extra,
    ],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener did not start: ${err}`)), 20_000);
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', (code) => reject(new Error(`listener exited ${code}: ${err}`)));
  });
  return { child, port, stderr: () => err };
}

/** SIGTERM; the exit code, or 'hung' (then SIGKILLed) when it did not exit within `ms`. */
export async function stopWithin(l: Listener, ms: number): Promise<number | null | 'hung'> {
  if (l.child.exitCode !== null) return l.child.exitCode;
  const exited = once(l.child, 'exit') as Promise<[number | null]>;
  l.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    exited.then(([c]) => c),
    new Promise<'hung'>((r) => {
      timer = setTimeout(() => r('hung'), ms);
    }),
  ]);
  clearTimeout(timer);
  if (code === 'hung') {
    l.child.kill('SIGKILL');
    await exited;
  }
  return code;
}

/** SIGTERM and wait; returns the exit code. */
export async function stopListener(l: Listener | undefined): Promise<number | null> {
  if (!l || l.child.exitCode !== null) return l?.child.exitCode ?? null;
  l.child.kill('SIGTERM');
  const [code] = (await once(l.child, 'exit')) as [number | null];
  return code;
}
