/**
 * Certificates that have expired or soon will. An expired listener certificate or CA makes every
 * sender fail its handshake (`TRANSPORT_TLS_FAILED`), an expired client certificate gets a sender
 * refused, and nobody notices until the next run fails, possibly at night and at every target at
 * once. So Haven says so ahead of time: the listener checks its certificate and CA when it starts
 * and once a day while it runs, and a sender checks its CA, its client certificate and the
 * certificate the target presents (each once per process: a job run logs it once).
 */
import { X509Certificate } from 'node:crypto';
import type { Logger } from '../core/log.ts';

/** Warn this many days before a certificate expires (a 90-day certificate renews at 30 left). */
export const CERT_WARN_DAYS = 30;
const DAY_MS = 86_400_000;

export interface CertFinding {
  /** "TLS certificate file /etc/haven/server.pem", "the target's certificate (tls://dr1:7070)". */
  what: string;
  subject: string;
  state: 'expired' | 'expiring' | 'not yet valid';
  /** notAfter, or notBefore for a certificate not yet valid. */
  date: Date;
  /** Whole days until `date` (negative: past). */
  days: number;
  fingerprint: string;
}

/** Every certificate of a PEM file (a CA file may hold a bundle). Unparsable blocks are skipped. */
export function pemCertificates(pem: Buffer | string): X509Certificate[] {
  const blocks = pem.toString().match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const out: X509Certificate[] = [];
  for (const b of blocks) {
    try {
      out.push(new X509Certificate(b));
    } catch {
      // Not ours to judge here: TLS refuses a broken certificate with its own message.
    }
  }
  return out;
}

/** What is wrong, or about to be, with the validity of `certs`. */
export function certificateFindings(
  certs: readonly X509Certificate[],
  what: string,
  now = new Date(),
  warnDays = CERT_WARN_DAYS,
): CertFinding[] {
  const out: CertFinding[] = [];
  for (const c of certs) {
    const notBefore = new Date(c.validFrom);
    const notAfter = new Date(c.validTo);
    const base = { what, subject: c.subject.replace(/\n/g, ', '), fingerprint: c.fingerprint256 };
    const days = (d: Date) => Math.floor((d.getTime() - now.getTime()) / DAY_MS);
    if (notAfter.getTime() <= now.getTime()) {
      out.push({ ...base, state: 'expired', date: notAfter, days: days(notAfter) });
    } else if (notBefore.getTime() > now.getTime()) {
      out.push({ ...base, state: 'not yet valid', date: notBefore, days: days(notBefore) });
    } else if (notAfter.getTime() - now.getTime() <= warnDays * DAY_MS) {
      out.push({ ...base, state: 'expiring', date: notAfter, days: days(notAfter) });
    }
  }
  return out;
}

export function describeFinding(f: CertFinding): string {
  const when = f.date.toISOString();
  switch (f.state) {
    case 'expired':
      return `${f.what} (${f.subject}) expired at ${when}: TLS connections that rely on it fail until it is renewed`;
    case 'not yet valid':
      return `${f.what} (${f.subject}) is not valid before ${when}: check this host's clock`;
    default:
      return `${f.what} (${f.subject}) expires at ${when}, in ${f.days} day(s): renew it before then`;
  }
}

/** Logs findings: expired or not yet valid as errors, expiring as warnings. */
export function logFindings(findings: readonly CertFinding[], log: Logger): void {
  for (const f of findings) {
    const fields = { subject: f.subject, fingerprint: f.fingerprint, date: f.date.toISOString() };
    if (f.state === 'expiring') log.warn(describeFinding(f), fields);
    else log.error(describeFinding(f), fields);
  }
}

/** What each logger was told already (a run's logger, or the process's). */
const reported = new WeakMap<object, Set<string>>();

/**
 * Like logFindings, but each certificate and state once per `log` (a sender connects often: a
 * run's log says it once). Pass the logger the caller was given, not a child made per call.
 */
export function logFindingsOnce(findings: readonly CertFinding[], log: Logger, to: Logger = log): void {
  let seen = reported.get(log);
  if (!seen) {
    seen = new Set();
    reported.set(log, seen);
  }
  const fresh = findings.filter((f) => {
    const key = `${f.what}\u0000${f.fingerprint}\u0000${f.state}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  logFindings(fresh, to);
}
