/**
 * The byte stream from the DR site to the primary's failback receiver (`haven failback-receive`,
 * see receiver.ts): a local child process (both sites on one host), or that command run on the
 * primary through the system ssh client, spawned exactly as replication reaches its targets
 * (transport/child.ts `spawnPeer`: same ssh flags, stderr tail, exit classification and stop).
 */
import { UsageError } from '../../core/errors.ts';
import { StreamSender } from '../../protocol/index.ts';
import { type Connection, type PeerHost, type PeerOptions, spawnPeer } from '../../transport/index.ts';

export type PrimaryEndpoint = PeerHost;

const HOST = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$|^\[[0-9A-Fa-f:.]+\]$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** `local`, or the primary's ssh address: `ssh://[user@]host[:port]` or `[user@]host`. */
export function parsePrimaryEndpoint(spec: string): PrimaryEndpoint {
  const s = spec.trim();
  if (s === 'local') return { kind: 'local' };
  const m = /^(?:ssh:\/\/)?(?:([^@/]+)@)?([^:/@]+|\[[^\]]+\])(?::(\d{1,5}))?\/?$/.exec(s);
  const user = m?.[1];
  const host = m?.[2];
  const port = m?.[3] === undefined ? undefined : Number(m[3]);
  if (
    !m ||
    !host ||
    !HOST.test(host) ||
    (user !== undefined && !USER.test(user)) ||
    (port !== undefined && (port < 1 || port > 65535))
  ) {
    throw new UsageError(
      `--to ${JSON.stringify(spec)} names no primary`,
      'Write `local` (both sites on this host) or the primary’s ssh address: ssh://[user@]host[:port] or [user@]host.',
    );
  }
  return {
    kind: 'ssh',
    host: host.replace(/^\[|\]$/g, ''),
    ...(user !== undefined ? { user } : {}),
    ...(port !== undefined ? { port } : {}),
  };
}

export function describeEndpoint(e: PrimaryEndpoint): string {
  return e.kind === 'local'
    ? 'local'
    : `ssh://${e.user ? `${e.user}@` : ''}${e.host}${e.port ? `:${e.port}` : ''}`;
}

/** How to reach the primary: ssh options, the remote command, how long to wait at close. */
export type LinkOptions = PeerOptions;

/** Starts the receiver with `args` (the words after `haven`) and returns the stream to it. */
export function openPrimaryLink(endpoint: PrimaryEndpoint, args: string[], o: LinkOptions = {}): Connection {
  return spawnPeer(
    endpoint,
    args,
    {
      noun: 'failback receiver',
      side: 'primary',
      name: 'the failback receiver',
      description: describeEndpoint(endpoint),
    },
    o,
  );
}

/** A session factory for the engine: each call starts a receiver and does the handshake. */
export function primarySessions(
  endpoint: PrimaryEndpoint,
  args: string[],
  o: LinkOptions & { compress: number },
  opened: StreamSender[],
): () => Promise<StreamSender> {
  return async () => {
    const conn = openPrimaryLink(endpoint, args, o);
    const sender = await StreamSender.over(conn, {
      compression:
        o.compress > 0 ? { algorithm: 'zstd', level: o.compress } : { algorithm: 'none', level: 0 },
      ...(o.log ? { log: o.log } : {}),
    });
    opened.push(sender);
    return sender;
  };
}
