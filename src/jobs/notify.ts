/**
 * Alert delivery: one notifier, used by `haven job run` and by the daemon alike. An event is sent
 * on every channel whose `min_severity` it reaches (email through SMTP, webhook as an HTTP POST
 * of JSON), at most once per problem: an event with a dedup key whose problem was already
 * alerted at this severity or higher is not sent again until the problem is resolved
 * (catalog/events.ts). A success is an `info` event, below any sensible threshold.
 */

import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Catalog, EventRecord, Severity } from '../catalog/catalog.ts';
import { severityRank } from '../catalog/catalog.ts';
import type { AlertsConfig, EmailAlertConfig, WebhookAlertConfig } from '../core/config.ts';
import { asHavenError, HavenError, ioError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';

export interface AlertChannel {
  readonly name: string;
  readonly minSeverity: Severity;
  send(event: EventRecord, host: string): Promise<void>;
}

/** Subject and plain-text body of an alert. Pure. */
export function formatAlert(event: EventRecord, host: string): { subject: string; text: string } {
  const first = event.message.split('\n')[0] ?? event.message;
  const subject = `[Haven ${event.severity.toUpperCase()}] ${first}`.slice(0, 200);
  const data = (event.data ?? {}) as { code?: unknown; hint?: unknown; error?: unknown };
  const lines = [
    event.message,
    '',
    `Severity: ${event.severity}`,
    `Event:    ${event.type}`,
    ...(event.server ? [`Server:   ${event.server}`] : []),
    ...(event.job ? [`Job:      ${event.job}`] : []),
    ...(event.target ? [`Target:   ${event.target}`] : []),
    ...(event.runId !== null ? [`Run:      #${event.runId}`] : []),
    `Time:     ${event.at.toISOString()}`,
    `Host:     ${host}`,
    ...(typeof data.code === 'string' ? [`Error:    ${data.code}`] : []),
    ...(typeof data.hint === 'string' ? [`Hint:     ${data.hint}`] : []),
    '',
    event.runId !== null
      ? `Details: haven runs ${event.runId} (on ${host}), and the run's log file.`
      : `Details: haven events (on ${host}).`,
  ];
  return { subject, text: `${lines.join('\n')}\n` };
}

async function readSecret(path: string, what: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (e) {
    throw ioError(e as NodeJS.ErrnoException, `${what} ${path}`);
  }
}

/** A channel of the configuration: its settings, and the least severity it is told about. */
abstract class ConfiguredChannel<C extends { minSeverity: Severity }> implements AlertChannel {
  abstract readonly name: string;
  readonly minSeverity: Severity;
  constructor(protected readonly c: C) {
    this.minSeverity = c.minSeverity;
  }
  abstract send(event: EventRecord, host: string): Promise<void>;
}

export class EmailChannel extends ConfiguredChannel<EmailAlertConfig> {
  readonly name = 'email';

  async send(event: EventRecord, host: string): Promise<void> {
    const url = new URL(this.c.smtp);
    const user = decodeURIComponent(url.username);
    const pass = this.c.passwordFile
      ? await readSecret(this.c.passwordFile, 'SMTP password file')
      : undefined;
    const secure = url.protocol === 'smtps:';
    // Loaded when a mail is sent: every `haven` command imports jobs/, few send mail.
    const { default: nodemailer } = await import('nodemailer');
    const transport = nodemailer.createTransport({
      host: url.hostname,
      port: url.port ? Number(url.port) : secure ? 465 : 25,
      secure,
      ...(user ? { auth: { user, pass: pass ?? decodeURIComponent(url.password) } } : {}),
      connectionTimeout: 15_000,
      greetingTimeout: 15_000,
      socketTimeout: 30_000,
    });
    const { subject, text } = formatAlert(event, host);
    try {
      await transport.sendMail({ from: this.c.from, to: this.c.to, subject, text });
    } finally {
      transport.close();
    }
  }
}

export class WebhookChannel extends ConfiguredChannel<WebhookAlertConfig> {
  readonly name = 'webhook';

  async send(event: EventRecord, host: string): Promise<void> {
    const token = this.c.tokenFile ? await readSecret(this.c.tokenFile, 'webhook token file') : undefined;
    const { subject, text } = formatAlert(event, host);
    const res = await fetch(this.c.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({ source: 'haven', host, subject, text, event }),
      signal: AbortSignal.timeout(30_000),
    });
    if (!res.ok) {
      throw new HavenError('ALERT_WEBHOOK_REJECTED', `webhook ${this.c.url} answered ${res.status}`, {
        kind: 'unavailable',
        details: { status: res.status },
      });
    }
  }
}

export interface DeliveryReport {
  sent: string[];
  failed: Array<{ channel: string; error: HavenError }>;
  /** The problem was already alerted: nothing sent. */
  duplicate: boolean;
}

export class Notifier {
  constructor(
    readonly channels: AlertChannel[],
    private readonly log: Logger = silentLogger,
    private readonly host: string = hostname(),
  ) {}

  static fromConfig(alerts: AlertsConfig, log?: Logger): Notifier {
    const channels: AlertChannel[] = [];
    if (alerts.email) channels.push(new EmailChannel(alerts.email));
    if (alerts.webhook) channels.push(new WebhookChannel(alerts.webhook));
    return new Notifier(channels, log);
  }

  private due(event: EventRecord): AlertChannel[] {
    return this.channels.filter((c) => severityRank(event.severity) >= severityRank(c.minSeverity));
  }

  /** Sends the event where it is due, once per problem; records that it was alerted. */
  async deliver(catalog: Catalog, event: EventRecord): Promise<DeliveryReport> {
    const report: DeliveryReport = { sent: [], failed: [], duplicate: false };
    const due = this.due(event);
    if (due.length === 0) return report;
    if (event.dedupKey && catalog.events.isAlertedAndOpen(event.dedupKey, event.severity)) {
      report.duplicate = true;
      this.log.verbose('problem already alerted; not sending again', { dedupKey: event.dedupKey });
      return report;
    }
    for (const c of due) {
      try {
        await c.send(event, this.host);
        report.sent.push(c.name);
      } catch (e) {
        const err = asHavenError(e);
        report.failed.push({ channel: c.name, error: err });
        this.log.warn(`could not send the ${c.name} alert`, { event: event.id, err });
      }
    }
    if (report.sent.length > 0) catalog.events.markAlerted(event.id);
    this.log.verbose('alert delivered', { event: event.id, sent: report.sent });
    return report;
  }
}
