/**
 * The codes of transport/ (target URLs, child processes, ssh, TLS). docs/errors.md is generated
 * from this and the other components' catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

export const TRANSPORT_CODES = {
  TRANSPORT_BAD_URL: {
    kind: 'usage',
    meaning: 'A target is neither a local path nor an ssh:// or tls:// URL Haven understands.',
    action: 'Write a target as a local path (/srv/haven), ssh://[user@]host[:port]/path, or tls://host:port.',
  },
  TRANSPORT_BAD_OPTION: {
    kind: 'usage',
    meaning:
      'TLS options are missing or unusable: no CA for a tls:// target, a certificate without its key, a PEM file that cannot be read or does not fit.',
    action:
      'Give --tls-ca with the CA that signed the target’s certificate, and readable PEM files: a certificate with the private key that belongs to it.',
  },
  TRANSPORT_NO_AUTH: {
    kind: 'usage',
    meaning: 'A TLS listener was asked to run without any way to authenticate its senders.',
    action:
      'Give `haven receive --listen` --tls-ca (client certificates signed by it), --token-file (a token), or both.',
  },
  TRANSPORT_CHILD_FAILED: {
    kind: 'unavailable',
    meaning:
      'The peer process (a local or remote `haven receive`, or ssh itself) could not be started, or ended with an error.',
    action: 'See the peer’s log on its host; the last lines of its stderr are in this error’s details.',
  },
  TRANSPORT_SSH_FAILED: {
    kind: 'unavailable',
    meaning: 'ssh could not log in to the other host (exit 255: unreachable, host key, permission).',
    action:
      'Check that the host is reachable and accepts this host’s key (`ssh -o BatchMode=yes` as the Haven user).',
  },
  TRANSPORT_REMOTE_COMMAND_MISSING: {
    kind: 'unavailable',
    meaning: 'The other host (or this one) has no haven command to run (exit 127).',
    action: 'Install Haven on that host, or set the remote command to its full path.',
  },
  TRANSPORT_CONNECT_FAILED: {
    kind: 'unavailable',
    meaning:
      'No connection to a tls:// target (refused, unreachable, unknown host), or it closed before the session began.',
    action:
      'Check that `haven receive --listen` runs on the target and that its port is reachable; see its log.',
  },
  TRANSPORT_TLS_FAILED: {
    kind: 'unavailable',
    meaning:
      'The TLS handshake with a target failed (certificate not trusted, expired, wrong name, no client certificate).',
    action:
      'Follow the hint: it names the certificate problem; check --tls-ca, --tls-cert and --tls-key on both sides.',
  },
  TRANSPORT_LISTEN_FAILED: {
    kind: ['conflict', 'unavailable'],
    meaning:
      'A TLS listener cannot listen: another process has the port (conflict), or the address is not this host’s (unavailable).',
    action: 'Choose a free port and an address of this host for `haven receive --listen`.',
  },
} as const satisfies Record<string, CodeEntry>;
