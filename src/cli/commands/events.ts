/**
 * `haven events [--json]`: what happened (runs started and finished, copies that failed, RPO
 * breaches, cache problems), newest first, with whether an alert went out; `--problems` lists
 * the problems that are open now.
 */
import type { Command } from 'commander';
import { catalogPath, openCatalog, SEVERITIES, type Severity } from '../../catalog/catalog.ts';
import { HavenError, UsageError } from '../../core/errors.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';
import { formatTime, timeHeader } from '../when.ts';

interface EventsFlags {
  severity?: string;
  job?: string;
  server?: string;
  type?: string;
  limit: string;
  problems?: boolean;
  json?: boolean;
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('events')
    .description('the event log, newest first (and the open problems with --problems)')
    .option('--severity <level>', `at least this severity (${SEVERITIES.join(', ')})`)
    .option('--job <name>', 'only events of this job')
    .option('--server <name>', 'only events of this server')
    .option('--type <type>', 'only events of this type, e.g. server.failed')
    .option('--limit <n>', 'at most this many events', '100')
    .option('--problems', 'list the open problems (what alerts are about) instead')
    .option('--json', 'print JSON');
  examples(command, [
    ['haven events --severity error --limit 20', 'the last 20 errors and worse'],
    ['haven events --problems --json', 'the open problems alerts are about, as JSON'],
    ['haven events --server web01 --type server.failed', 'failed copies of web01'],
  ]);
  command.action(async (flags: EventsFlags) => {
    const ctx = context();
    const tz = (await ctx.config()).timezone;
    const limit = Number(flags.limit);
    if (!Number.isInteger(limit) || limit < 1)
      throw new UsageError(`--limit must be a positive whole number, got ${flags.limit}`);
    if (flags.severity !== undefined && !SEVERITIES.includes(flags.severity as Severity)) {
      throw new UsageError(
        `--severity must be one of ${SEVERITIES.join(', ')}, got ${JSON.stringify(flags.severity)}`,
      );
    }
    let catalog: ReturnType<typeof openCatalog>;
    try {
      catalog = openCatalog(catalogPath(ctx.paths.stateDir), { readOnly: true, log: ctx.log });
    } catch (e) {
      if (e instanceof HavenError && e.code === 'CATALOG_NOT_FOUND') {
        if (flags.json) ctx.printJson([]);
        else ctx.print('no events yet');
        return;
      }
      throw e;
    }
    try {
      if (flags.problems) {
        const problems = catalog.events.openProblems();
        if (flags.json) ctx.printJson(problems);
        else if (problems.length === 0) ctx.print('no open problems');
        else
          ctx.printTable(
            ['problem', 'severity', timeHeader('since', tz), timeHeader('last seen', tz), 'times', 'alerted'],
            problems.map((p) => [
              p.dedupKey,
              p.severity,
              formatTime(p.openedAt, tz),
              formatTime(p.lastSeenAt, tz),
              String(p.occurrences),
              p.alertedAt ? formatTime(p.alertedAt, tz) : 'no',
            ]),
          );
        return;
      }
      const events = catalog.events.list({
        minSeverity: flags.severity as Severity | undefined,
        job: flags.job,
        server: flags.server,
        type: flags.type,
        limit,
      });
      if (flags.json) {
        ctx.printJson(events);
        return;
      }
      if (events.length === 0) {
        ctx.print('no events');
        return;
      }
      ctx.printTable(
        ['id', timeHeader('time', tz), 'severity', 'type', 'message', 'alerted'],
        events.map((e) => [
          String(e.id),
          formatTime(e.at, tz),
          e.severity,
          e.type,
          e.message.length > 120 ? `${e.message.slice(0, 117)}...` : e.message,
          e.alertedAt ? 'yes' : '',
        ]),
      );
    } finally {
      catalog.close();
    }
  });
}
