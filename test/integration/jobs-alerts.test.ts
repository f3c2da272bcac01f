/**
 * Issue 4, third must-show: alerts. A real SMTP server (smtp-server) and a webhook receiver run
 * in the test. A job whose copy fails sends one email naming the server and the reason (and one
 * webhook POST, with the bearer token); a successful job sends nothing at threshold `warning`;
 * the same failure again is the same problem: no second alert.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { smtpServer } from '../helpers/smtp.ts';
import { scratchDir, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-jobs';

interface Post {
  auth: string | undefined;
  body: { source: string; event: { type: string; server: string; severity: string } };
}

async function webhookServer(t: {
  after(fn: () => unknown): void;
}): Promise<{ posts: Post[]; port: number }> {
  const posts: Post[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({
        auth: req.headers.authorization,
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { posts, port: (server.address() as AddressInfo).port };
}

test('a failing run alerts once by email and webhook, with server and reason; a success sends none', async (t) => {
  const { dir } = await scratchDir(t, `${PREFIX}-alerts`);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  await guest.writePattern('vda', 5, 8);
  const smtp = await smtpServer(t);
  const hook = await webhookServer(t);
  const tokenFile = join(dir, 'hook.token');
  await writeFile(tokenFile, 'hook-secret-0123456789\n', { mode: 0o600 });
  // A regular file where the bad target's store directory would have to be.
  const notADir = join(dir, 'plain-file');
  await writeFile(notADir, 'not a directory\n');
  const config = await writeConfig(
    dir,
    `targets:
  good:
    url: ${join(dir, 'store')}
  bad:
    url: ${notADir}/store
jobs:
  good-job:
    servers: [${guest.name}]
    target: good
  bad-job:
    servers: [${guest.name}]
    target: bad
    retries: 0
alerts:
  email:
    to: [ops@example.com, dr@example.com]
    from: haven@example.com
    smtp: smtp://127.0.0.1:${smtp.port}
    min_severity: warning
  webhook:
    url: http://127.0.0.1:${hook.port}/haven
    token_file: ${tokenFile}
    min_severity: error
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });

  // A success: info events only, below the threshold: nothing is sent.
  const ok = await runHaven(h, ['job', 'run', 'good-job']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(smtp.mails.length, 0, 'a success sends no email');
  assert.equal(hook.posts.length, 0);

  // A failure: one email naming the server and the reason.
  const bad = await runHaven(h, ['job', 'run', 'bad-job']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /\[JOB_FAILED\]: job bad-job failed: 1 of 1 copies failed/);
  assert.equal(smtp.mails.length, 1, 'one email');
  const mail = smtp.mails[0]!;
  assert.deepEqual(mail.envelope, { from: 'haven@example.com', to: ['ops@example.com', 'dr@example.com'] });
  assert.ok(mail.subject.startsWith('[Haven ERROR]'), mail.subject);
  assert.ok(mail.subject.includes(guest.name), `subject names the server: ${mail.subject}`);
  assert.ok(mail.body.includes(`Server:   ${guest.name}`), mail.body);
  assert.ok(mail.body.includes('Job:      bad-job'), mail.body);
  assert.ok(mail.body.includes('Target:   bad'), mail.body);
  assert.ok(mail.body.includes('Error:    TRANSPORT_CHILD_FAILED'), mail.body);
  assert.match(mail.body, /not a directory/, 'the reason');
  assert.equal(hook.posts.length, 1, 'one webhook call');
  assert.equal(hook.posts[0]!.auth, 'Bearer hook-secret-0123456789');
  assert.equal(hook.posts[0]!.body.source, 'haven');
  assert.deepEqual(
    [hook.posts[0]!.body.event.type, hook.posts[0]!.body.event.server, hook.posts[0]!.body.event.severity],
    ['server.failed', guest.name, 'error'],
  );

  // The same failure again is the same problem: recorded, not alerted again.
  const again = await runHaven(h, ['job', 'run', 'bad-job']);
  assert.notEqual(again.code, 0);
  assert.equal(smtp.mails.length, 1, 'no second email for the same problem');
  assert.equal(hook.posts.length, 1);
  const failed = await havenJson<Array<{ type: string; alertedAt: string | null }>>(h, [
    'events',
    '--type',
    'server.failed',
  ]);
  assert.equal(failed.length, 2);
  assert.deepEqual(
    failed.map((e) => e.alertedAt !== null),
    [false, true],
    'newest first: only the first occurrence was alerted',
  );
  const problems = await havenJson<Array<{ dedupKey: string; occurrences: number }>>(h, [
    'events',
    '--problems',
  ]);
  assert.deepEqual(
    problems.map((p) => [p.dedupKey, p.occurrences]),
    [[`copy:${guest.name}:bad`, 2]],
  );

  // The good job runs fine again meanwhile: still no mail for it.
  const ok2 = await runHaven(h, ['job', 'run', 'good-job']);
  assert.equal(ok2.code, 0, ok2.stderr);
  assert.equal(smtp.mails.length, 1);
});
