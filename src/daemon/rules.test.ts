/**
 * The example alerting rules shipped in deploy/prometheus/ (docs/daemon.md "Alert rules"):
 * promtool accepts them and their unit tests pass, and every metric and label they use exists in
 * a real scrape of a fleet (test-support/fleet.ts), so a renamed metric or label cannot leave a
 * rule that silently never fires.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { exec } from '../core/exec.ts';
import { installPath } from '../core/package-root.ts';
import { fleetCatalog, fleetMetrics } from './test-support/fleet.ts';
import { parsePrometheus } from './test-support/prometheus.ts';

const DIR = installPath('deploy', 'prometheus');
const RULES = 'haven-rules.yml';

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Series Prometheus makes itself (from the scrape, not from Haven), with their labels. */
const PROMETHEUS_OWN: Record<string, string[]> = { up: ['job', 'instance'] };

test('promtool checks the rules and runs their unit tests', async () => {
  const check = await exec('promtool', ['check', 'rules', RULES], { cwd: DIR });
  assert.match(check.stdout, /SUCCESS: 10 rules found/);
  const unit = await exec('promtool', ['test', 'rules', 'haven-rules.test.yml'], { cwd: DIR });
  assert.match(unit.stdout, /SUCCESS/);
});

test('every metric and label the rules use is in a scrape of a fleet', async (t) => {
  const fleet = fleetCatalog();
  t.after(() => fleet.close());
  const metrics = fleetMetrics(fleet);
  const labelsOf = new Map<string, Set<string>>();
  for (const s of parsePrometheus(await metrics.scrape())) {
    const set = labelsOf.get(s.name) ?? new Set<string>();
    for (const l of Object.keys(s.labels)) set.add(l);
    labelsOf.set(s.name, set);
  }
  for (const [name, labels] of Object.entries(PROMETHEUS_OWN)) labelsOf.set(name, new Set(labels));

  const rules = (
    parse(readFileSync(`${DIR}/${RULES}`, 'utf8')) as { groups: Array<{ rules: Rule[] }> }
  ).groups.flatMap((g) => g.rules);
  assert.equal(rules.length, 10);
  for (const rule of rules) {
    const used = [...rule.expr.matchAll(/\b(haven_[a-z0-9_]+|up)\b(\{([^}]*)\})?/g)];
    assert.ok(used.length > 0, `${rule.alert} uses a Haven metric`);
    for (const [, name, , matchers] of used) {
      const labels = labelsOf.get(name!);
      assert.ok(labels, `${rule.alert}: ${name} is not in the scrape`);
      for (const [, label] of (matchers ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)) {
        assert.ok(labels.has(label!), `${rule.alert}: ${name} has no label ${label}`);
      }
    }
    // What the texts and labels name must come with the alert: a label of every metric it uses.
    const texts = Object.values({ ...rule.annotations, ...rule.labels }).join(' ');
    for (const [, label] of texts.matchAll(/\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g)) {
      for (const [, name] of used) {
        assert.ok(
          labelsOf.get(name!)?.has(label!),
          `${rule.alert} names $labels.${label}, which ${name} lacks`,
        );
      }
    }
  }
});
