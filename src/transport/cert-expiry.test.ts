import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { captureLog } from '../../test/helpers/capture-log.ts';
import { certificateFindings, logFindingsOnce, pemCertificates } from './cert-expiry.ts';

/**
 * A self-signed certificate valid for `days` (negative: expired) made by the openssl CLI; only
 * `x509 -req` takes a negative validity (OpenSSL 3.0 has no -not_after).
 */
function certificate(dir: string, name: string, days: number): string {
  const at = (ext: string) => join(dir, `${name}.${ext}`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const quiet = { stdio: 'ignore' } as const;
  execFileSync(
    'openssl',
    ['req', '-new', ...ec, '-keyout', at('key'), '-out', at('csr'), '-subj', `/CN=${name}`],
    quiet,
  );
  execFileSync(
    'openssl',
    ['x509', '-req', '-in', at('csr'), '-signkey', at('key'), '-days', String(days), '-out', at('pem')],
    quiet,
  );
  return readFileSync(at('pem'), 'utf8');
}

describe('certificate expiry', () => {
  const dir = mkdtempSync(join(tmpdir(), 'haven-t-cert-'));
  const long = certificate(dir, 'long', 400);
  const soon = certificate(dir, 'soon', 10);
  const expired = certificate(dir, 'expired', -1);

  it('finds expired and expiring certificates in a bundle, not the long-lived one', () => {
    const bundle = `${long}\n${soon}\n${expired}`;
    const certs = pemCertificates(bundle);
    assert.equal(certs.length, 3);
    const found = certificateFindings(certs, 'TLS CA file x.pem');
    assert.deepEqual(
      found.map((f) => [f.subject, f.state]),
      [
        ['CN=soon', 'expiring'],
        ['CN=expired', 'expired'],
      ],
    );
    assert.ok(found[0]!.days >= 9 && found[0]!.days <= 10);
    // 400 days is outside the 30-day warning, but not outside a longer one.
    assert.equal(certificateFindings(pemCertificates(long), 'x', new Date(), 500)[0]?.state, 'expiring');
    // Seen from before its start, a certificate is not valid yet (a host clock set wrong).
    const past = new Date(Date.now() - 5 * 86_400_000);
    assert.equal(certificateFindings(pemCertificates(soon), 'x', past)[0]?.state, 'not yet valid');
  });

  it('tells each logger once: an expired certificate as an error line, an expiring one as a warning', () => {
    const log = captureLog();
    const other = captureLog();
    const findings = certificateFindings(pemCertificates(`${soon}${expired}`), 'TLS certificate file c.pem');
    logFindingsOnce(findings, log);
    logFindingsOnce(findings, log);
    logFindingsOnce(findings, other);
    assert.equal(log.lines.length, 2);
    assert.match(
      log.lines[0]!,
      /^TLS certificate file c\.pem \(CN=soon\) expires at \S+, in (9|10) day\(s\): renew it/,
    );
    assert.match(
      log.lines[1]!,
      /^TLS certificate file c\.pem \(CN=expired\) expired at \S+: TLS connections that rely on it fail/,
    );
    assert.equal(other.lines.length, 2);
    rmSync(dir, { recursive: true, force: true });
  });
});
