/**
 * The codes of daemon/ (`haven serve`: its HTTP API, listening address, drills it runs).
 * docs/errors.md is generated from this and the other components' catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

export const DAEMON_CODES = {
  API_BAD_REQUEST: {
    kind: 'usage',
    meaning: 'An API request does not parse (malformed JSON or parameters).',
    action: 'Correct the request; docs/daemon.md describes the API.',
  },
  API_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The API has no such endpoint, or the dashboard no such file.',
    action: 'Check the URL against docs/daemon.md.',
  },
  API_UNAUTHORIZED: {
    kind: 'refused',
    meaning: 'An API request came without the daemon’s bearer token.',
    action:
      'Send "Authorization: Bearer <token>"; the token is in the api-token file of the daemon’s state directory.',
  },
  API_TOKEN_INVALID: {
    kind: 'config',
    meaning: 'The daemon’s API token file holds no usable token.',
    action: 'Remove the file; the daemon creates a new token at its next start (`haven serve`).',
  },
  API_TOO_MANY_STREAMS: {
    kind: 'resource',
    meaning:
      'The daemon serves as many progress streams as it is configured to (in all, or for this client).',
    action:
      'Close other dashboards or streams, or raise daemon.progress_streams / daemon.progress_streams_per_client.',
  },
  API_TARGET_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'A target did not answer the daemon’s query in time.',
    action: 'Check that the target is reachable (`haven doctor`); the dashboard asks again in a minute.',
  },
  DAEMON_ADDRESS_IN_USE: {
    kind: 'conflict',
    meaning: 'Another process listens on the daemon’s address and port.',
    action:
      'Find it with `ss -ltnp` (often another `haven serve`, e.g. the systemd unit); stop it, or move the daemon with --listen or daemon.listen.',
  },
  DAEMON_ADDRESS_UNAVAILABLE: {
    kind: 'unavailable',
    meaning: 'No interface of this host has the address the daemon should listen on.',
    action: '`ip -br address` lists this host’s addresses; set --listen or daemon.listen to one of them.',
  },
  DAEMON_PORT_DENIED: {
    kind: 'io',
    meaning: 'The daemon may not listen on a port below 1024 without privileges.',
    action:
      'Run as root (or with CAP_NET_BIND_SERVICE), or choose a port from 1024 up with --listen or daemon.listen.',
  },
  DRILL_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The configuration defines no drill of this name.',
    action: 'Configure drills under drills: in the configuration; reload the daemon after adding one.',
  },
  SCRUB_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The configuration defines no scrub of this name.',
    action: 'Configure scrubs under scrubs: in the configuration; reload the daemon after adding one.',
  },
} as const satisfies Record<string, CodeEntry>;
