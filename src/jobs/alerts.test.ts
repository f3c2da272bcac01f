/**
 * Alert delivery rules against a real catalog file and a real HTTP receiver (the webhook
 * channel): the threshold, one alert per problem, escalation, resolution, and a receiver that
 * fails. Email through a real SMTP server is in test/integration/jobs-alerts.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type TestContext, test } from 'node:test';
import type { Catalog, EventRecord } from '../catalog/catalog.ts';
import { scratchCatalog } from '../catalog/test-support.ts';
import { EventLog } from './events.ts';
import { formatAlert, Notifier, WebhookChannel } from './notify.ts';

const catalog = (t: TestContext): Catalog => scratchCatalog(t, 'haven-t-jobs-alerts-');

async function receiver(t: TestContext, status: () => number) {
  const posts: Array<{ event: EventRecord; subject: string }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const code = status();
      if (code < 300) posts.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(code).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { posts, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
}

test('threshold, one alert per problem, escalation, resolution', async (t) => {
  const c = catalog(t);
  const hook = await receiver(t, () => 204);
  const notifier = new Notifier([
    new WebhookChannel({ url: hook.url, tokenFile: undefined, minSeverity: 'warning' }),
  ]);
  const events = new EventLog(c, notifier);
  const fail = (severity: 'error' | 'critical' = 'error') =>
    events.emit({
      type: 'server.failed',
      severity,
      server: 'web01',
      target: 'dr1',
      message: 'web01 → dr1: copy failed: no space',
      data: { code: 'NO_SPACE', hint: 'Free space.' },
      dedupKey: 'copy:web01:dr1',
    });
  events.emit({ type: 'run.finished', severity: 'info', message: 'job ok' });
  await events.flush();
  assert.equal(hook.posts.length, 0, 'info is below the threshold');

  const first = fail();
  await events.flush();
  assert.equal(hook.posts.length, 1);
  assert.equal(hook.posts[0]!.event.id, first.id);
  assert.ok(c.events.get(first.id)!.alertedAt, 'marked alerted');

  fail();
  fail();
  await events.flush();
  assert.equal(hook.posts.length, 1, 'the same problem is not alerted again');

  fail('critical');
  await events.flush();
  assert.equal(hook.posts.length, 2, 'an escalation is news');

  assert.equal(
    events.resolve('copy:web01:dr1', { type: 'server.recovered', severity: 'info', message: 'ok again' }),
    true,
  );
  assert.equal(events.resolve('copy:web01:dr1'), false, 'resolving twice does nothing');
  fail();
  await events.flush();
  assert.equal(hook.posts.length, 3, 'the next occurrence after a resolution is a new problem');
});

test('a receiver that fails: alert.failed is recorded, and the next occurrence tries again', async (t) => {
  const c = catalog(t);
  let code = 500;
  const hook = await receiver(t, () => code);
  const events = new EventLog(
    c,
    new Notifier([new WebhookChannel({ url: hook.url, tokenFile: undefined, minSeverity: 'error' })]),
  );
  const emit = () =>
    events.emit({ type: 'rpo.breached', severity: 'error', message: 'old', dedupKey: 'rpo:web01:dr1' });
  const e = emit();
  await events.flush();
  assert.equal(c.events.get(e.id)!.alertedAt, null);
  const failed = c.events.list({ type: 'alert.failed' });
  assert.equal(failed.length, 1);
  assert.match(
    failed[0]!.message,
    /the webhook alert for event #\d+ could not be sent: webhook .* answered 500/,
  );
  code = 204;
  emit();
  await events.flush();
  assert.equal(hook.posts.length, 1, 'sent once the receiver works again');
});

test('alert text: subject and the facts an operator needs', () => {
  const { subject, text } = formatAlert(
    {
      id: 7,
      at: new Date('2024-05-01T01:31:00Z'),
      severity: 'error',
      type: 'server.failed',
      server: 'db01',
      job: 'nightly',
      target: 'dr1',
      runId: 42,
      message: 'db01 → dr1: copy failed: no space left',
      data: { code: 'NO_SPACE', hint: 'Free space on the target.' },
      dedupKey: 'copy:db01:dr1',
      alertedAt: null,
    },
    'kvm1',
  );
  assert.equal(subject, '[Haven ERROR] db01 → dr1: copy failed: no space left');
  for (const line of [
    'Server:   db01',
    'Job:      nightly',
    'Target:   dr1',
    'Run:      #42',
    'Time:     2024-05-01T01:31:00.000Z',
    'Host:     kvm1',
    'Error:    NO_SPACE',
    'Hint:     Free space on the target.',
    'Details: haven runs 42 (on kvm1)',
  ]) {
    assert.ok(text.includes(line), `${line} in:\n${text}`);
  }
});
