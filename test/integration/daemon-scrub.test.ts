/**
 * Issue 13.5, scheduled scrubbing, with the real `haven serve` in a child process and a real
 * SMTP server: a scrub configured with a cron schedule verifies a store of this DR host (one
 * server received through the real `haven receive`, one byte of its image then flipped). The run
 * is recorded (`haven runs --kind verify`), the damage raises one `scrub.damaged` event and one
 * email, /metrics says how many problems the scrub found, and the damaged chunk is marked for
 * the next replication to send again from the source.
 */
import assert from 'node:assert/strict';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Run, ServerResult } from '../../src/catalog/catalog.ts';
import { StreamSender } from '../../src/protocol/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import { openTarget } from '../../src/transport/index.ts';
import { havenEnv, havenJson } from '../helpers/haven.ts';
import { smtpServer } from '../helpers/smtp.ts';
import { freePort, parsePrometheus, startDaemon, waitFor, writeConfig } from './jobs-helpers.ts';
import { C, content, makeMeta, scratch, sendDelta } from './protocol-helpers.ts';

type RunView = Run & { servers: ServerResult[] };

/** A store holding one generation of `server` (one disk, 8 chunks of data), received for real. */
async function storeWithServer(store: string, server: string): Promise<string> {
  const conn = await openTarget(store, {});
  const sender = await StreamSender.connect(conn.stream, { compression: { algorithm: 'none', level: 0 } });
  try {
    const disk = `${server}_0`;
    const meta = makeMeta(server, [{ name: disk, size: 16 * C }]);
    await sender.open(meta);
    const image = content(21, 16 * C);
    assert.ok(
      await sendDelta(sender, meta, { [disk]: image }, [{ disk, kind: 'data', offset: 0, length: 8 * C }]),
    );
  } finally {
    await sender.close();
    await conn.close();
  }
  return join(store, `${server}_${server}_0_1.raw`);
}

test('haven serve scrubs a store on schedule: the damage is recorded, alerted once and in /metrics', async (t) => {
  const dir = await scratch(t, 'daemon-scrub');
  const store = join(dir, 'store');
  const server = 'Scrub01';
  const image = await storeWithServer(store, server);
  const fh = await open(image, 'r+');
  try {
    await fh.write(Buffer.from([0xa5]), 0, 1, 3 * C + 17);
    await fh.sync();
  } finally {
    await fh.close();
  }
  const smtp = await smtpServer(t);
  const port = await freePort();
  const config = await writeConfig(
    dir,
    `scrubs:
  weekly:
    store: ${store}
    schedule: "* * * * *"
alerts:
  email:
    to: [ops@example.com]
    from: haven@example.com
    smtp: smtp://127.0.0.1:${smtp.port}
    min_severity: error
daemon:
  listen: 127.0.0.1:${port}
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const daemon = startDaemon(t, h.env);

  const run = await waitFor(
    'a scheduled scrub to finish',
    async () =>
      (await havenJson<RunView[]>(h, ['runs', '--kind', 'verify'])).find(
        (r) => r.trigger === 'schedule' && r.status !== 'running',
      ),
    150_000,
    2000,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}\ndaemon stderr:\n${daemon.stderr()}`);
  });
  assert.equal(run.job, 'weekly');
  assert.equal(run.status, 'failed');
  assert.equal(run.servers.length, 1);
  assert.equal(run.servers[0]!.server, server);
  assert.equal(run.servers[0]!.status, 'failed');
  assert.equal(run.servers[0]!.errorCode, 'STORE_DIGEST_MISMATCH');

  const events = await havenJson<Array<{ type: string; server: string; severity: string; message: string }>>(
    h,
    ['events', '--type', 'scrub.damaged'],
  );
  assert.ok(events.length >= 1);
  assert.equal(events[0]!.server, server);
  assert.equal(events[0]!.severity, 'error');
  assert.match(events[0]!.message, /sends damaged chunks of the newest generation again from the source/);

  await waitFor('the alert email', async () => (smtp.mails.length > 0 ? true : undefined), 30_000, 500);
  const mail = smtp.mails[0]!;
  assert.ok(mail.subject.startsWith('[Haven ERROR]'), mail.subject);
  assert.ok(mail.subject.includes(server), mail.subject);
  assert.match(mail.body, /scrub weekly/);

  const token = (await readFile(join(h.stateDir, 'api-token'), 'utf8')).trim();
  const text = await (
    await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${token}` } })
  ).text();
  const found = parsePrometheus(text).find((s) => s.name === 'haven_scrub_problems');
  assert.ok(found, `haven_scrub_problems in /metrics:\n${text}`);
  assert.deepEqual(found.labels, { scrub: 'weekly', store });
  assert.equal(found.value, 1);

  // Whatever later scrubs find, the same damage is one problem: at most one email.
  assert.equal(smtp.mails.length, 1);
  // The damaged chunk of the newest generation is marked: the next replication resends it.
  const fs = await openFsStore(store);
  try {
    assert.equal(await fs.needsResync('Scrub01'), true);
  } finally {
    await fs.close();
  }
});
