/**
 * A shaped WAN link for tests and the bench (issue 15's must-shows "over a 100 Mbit/s link"): a
 * network namespace joined to the host by a veth pair on a private /30, each end's egress shaped
 * by `tc tbf`, and a real `haven receive --listen` TLS receiver inside the namespace. The link can
 * be cut and restored.
 *
 * Both ends are shaped, like a real link: the host end carries the replication data (what the
 * rate limits), the namespace end the acknowledgements and replies. tbf's `latency` bounds its
 * queue (50 ms at 100 Mbit/s: about 600 KiB), so a sender faster than the link is paced by TCP,
 * not by drops alone; the burst (64 KiB) is a few milliseconds of the rate.
 *
 * A cut sets the namespace's end down (`ip link set down`), as when the far end of a WAN link
 * goes: the host's end loses its carrier, keeps its route (marked linkdown) and drops whatever is
 * sent into it, silently: no RST, no ICMP, a connect() that hangs. Only the sender's own stall
 * detection can notice it. (Setting the host's end down instead would remove the /30's route and
 * send the packets to the default route; this kernel has no netem, clsact or matchall to drop
 * them in tc.) Restoring sets it up again; both ends keep their tbf.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HAVEN_BIN } from '../../src/transport/index.ts';

const run = promisify(execFile);

export interface ShapedLink {
  /** The namespace (`hvs-…`). */
  ns: string;
  /** The veth end on the host and the one in the namespace. */
  hostDev: string;
  nsDev: string;
  hostIp: string;
  /** The receiver's address. */
  nsIp: string;
  rate: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  /** Removes the namespace and the veth pair (idempotent). */
  destroy(): Promise<void>;
}

async function ip(args: string[]): Promise<string> {
  return (await run('ip', args)).stdout;
}

async function tc(ns: string | null, args: string[]): Promise<void> {
  await run(ns ? 'ip' : 'tc', ns ? ['netns', 'exec', ns, 'tc', ...args] : args);
}

/** The first 10.231.X.0/24 no interface on the host uses yet. */
async function freeSubnet(): Promise<number> {
  const used = await ip(['-o', '-4', 'addr', 'show']);
  for (let x = 1; x < 255; x++) {
    if (!used.includes(`10.231.${x}.`)) return x;
  }
  throw new Error('no free 10.231.X.0/24 subnet for a shaped link');
}

/**
 * A namespace `hvs-<tag>` joined by a veth pair whose both ends are shaped to `rate` (tc syntax,
 * e.g. `100mbit`). `tag`: a few characters, unique among links alive at once (the interface
 * names are `hvs<tag>h` and `hvs<tag>n`, at most 15 characters).
 */
export async function shapedLink(tag: string, rate = '100mbit'): Promise<ShapedLink> {
  if (tag.length > 11) throw new Error(`shaped link tag ${tag}: at most 11 characters`);
  const ns = `hvs-${tag}`;
  const hostDev = `hvs${tag}h`;
  const nsDev = `hvs${tag}n`;
  const x = await freeSubnet();
  const hostIp = `10.231.${x}.1`;
  const nsIp = `10.231.${x}.2`;
  const tbf = ['root', 'tbf', 'rate', rate, 'burst', '64kb', 'latency', '50ms'];
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    // Deleting the host end deletes its peer; the namespace goes after (asynchronously in the kernel).
    await ip(['link', 'del', hostDev]).catch(() => undefined);
    await ip(['netns', 'del', ns]).catch(() => undefined);
  };
  try {
    await ip(['netns', 'add', ns]);
    await ip(['link', 'add', hostDev, 'type', 'veth', 'peer', 'name', nsDev, 'netns', ns]);
    await ip(['addr', 'add', `${hostIp}/30`, 'dev', hostDev]);
    await ip(['link', 'set', hostDev, 'up']);
    await ip(['-n', ns, 'addr', 'add', `${nsIp}/30`, 'dev', nsDev]);
    await ip(['-n', ns, 'link', 'set', nsDev, 'up']);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    await tc(null, ['qdisc', 'add', 'dev', hostDev, ...tbf]);
    await tc(ns, ['qdisc', 'add', 'dev', nsDev, ...tbf]);
  } catch (e) {
    await destroy();
    throw e;
  }
  return {
    ns,
    hostDev,
    nsDev,
    hostIp,
    nsIp,
    rate,
    cut: async () => {
      await ip(['-n', ns, 'link', 'set', nsDev, 'down']);
    },
    restore: async () => {
      await ip(['-n', ns, 'link', 'set', nsDev, 'up']);
    },
    destroy,
  };
}

export interface ShapedReceiver {
  child: ChildProcess;
  /** `tls://<nsIp>:<port>`. */
  url: string;
  stderr: () => string;
  stop: () => Promise<void>;
}

/**
 * `haven receive --listen <nsIp>:<port>` on `store` inside the link's namespace, with the PKI of
 * test/helpers/tls.ts `makePki(pkiDir, [link.nsIp])` (client certificates signed by its CA).
 */
export async function startShapedReceiver(
  link: ShapedLink,
  pkiDir: string,
  store: string,
  env: NodeJS.ProcessEnv,
  port = 7443,
): Promise<ShapedReceiver> {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      link.ns,
      process.execPath,
      HAVEN_BIN,
      'receive',
      '--listen',
      `${link.nsIp}:${port}`,
      '--store',
      store,
      '--tls-cert',
      join(pkiDir, 'server.pem'),
      '--tls-key',
      join(pkiDir, 'server.key'),
      '--tls-ca',
      join(pkiDir, 'ca.pem'),
    ],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`receiver in ${link.ns} did not start: ${err}`)), 30_000);
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.includes(`listening on ${link.nsIp}:${port}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`receiver in ${link.ns} exited ${code}: ${err}`));
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  return { child, url: `tls://${link.nsIp}:${port}`, stderr: () => err, stop };
}

/** The YAML of a `tls://` target through `receiver`, client certificate from `pkiDir`, no compression. */
export function shapedTargetYaml(name: string, receiver: ShapedReceiver, pkiDir: string): string {
  return (
    `  ${name}:\n    url: ${receiver.url}\n    compress: 0\n    tls:\n` +
    `      ca: ${join(pkiDir, 'ca.pem')}\n      cert: ${join(pkiDir, 'client.pem')}\n      key: ${join(pkiDir, 'client.key')}\n`
  );
}
