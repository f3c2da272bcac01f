/**
 * The dashboard's summary tiles, trend charts and restore points (app.js does the tables, the
 * token and the live stream). Trends come from GET /api/history, tiles from /api/summary (read
 * with the tables every few seconds), restore points from /api/restore-points, which asks the
 * targets themselves and so is read once a minute, or when the operator asks for it. Uses `el`
 * from app.js and `havenFormat`/`havenCharts` from charts.js.
 */

const PANEL_REFRESH_MS = 60_000;

const panels = {
  api: null,
  onUnauthorized: null,
  Unauthorized: null,
  timer: null,
  soon: null,
  days: 14,
};

/** Runs a panel's load, sending a refused token to the token form and showing other failures. */
async function panelLoad(what, target, fn) {
  try {
    await fn();
  } catch (e) {
    if (panels.Unauthorized && e instanceof panels.Unauthorized) panels.onUnauthorized?.();
    else if (e?.name !== 'AbortError') {
      target.replaceChildren(
        el('p', { class: 'message error' }, `Cannot read the ${what}: ${e?.message ?? e}`),
      );
      target.hidden = false;
    }
  }
}

// ---- Tiles --------------------------------------------------------------------------------

function setTile(name, value, kind, title) {
  const tile = document.querySelector(`[data-tile="${name}"]`);
  tile.querySelector('.value').textContent = String(value);
  tile.dataset.kind = kind;
  tile.title = title ?? '';
}

function renderTiles(s) {
  const n = s.servers;
  setTile('protected', n.protected, n.protected > 0 ? 'ok' : 'none', `${n.protected} of ${n.total} servers`);
  setTile(
    'at-risk',
    n.atRisk,
    n.atRisk > 0 ? 'warn' : 'ok',
    'within the objective, but the last copy failed or it is nearly used up',
  );
  setTile('failing', n.failing, n.failing > 0 ? 'bad' : 'ok', 'beyond the objective, or never copied');
  setTile('problems', s.openProblems, s.openProblems > 0 ? 'bad' : 'ok');
  const drills = s.drills.passing + s.drills.failing;
  setTile(
    'drills',
    drills === 0 ? '–' : `${s.drills.passing}/${drills}`,
    drills === 0 ? 'none' : s.drills.failing > 0 ? 'bad' : 'ok',
    'servers whose last drill passed, of those drilled',
  );
  const tightest = [...s.targets].sort((a, b) => a.freeBytes / a.totalBytes - b.freeBytes / b.totalBytes)[0];
  if (!tightest) setTile('space', '–', 'none', 'no target has reported its space yet');
  else {
    const pct = Math.floor((100 * tightest.freeBytes) / tightest.totalBytes);
    setTile(
      'space',
      `${pct} %`,
      pct < 10 ? 'bad' : pct < 20 ? 'warn' : 'ok',
      `${tightest.target}: ${havenFormat.bytes(tightest.freeBytes)} free of ${havenFormat.bytes(tightest.totalBytes)}`,
    );
  }
}

// ---- Trends -------------------------------------------------------------------------------

const pairLabel = (x) => `${x.server} → ${x.target}`;
const byTime = (a, b) => a[0] - b[0];

/** The chart series of GET /api/history, per chart (see docs/daemon.md for what each shows). */
function trendSeries(h) {
  const from = Date.parse(h.from) / 1000;
  const to = Date.parse(h.to) / 1000;
  const objectives = new Map();
  for (const r of h.rpo) {
    if (r.objectiveSeconds !== null) objectives.set(`${r.job ?? ''} ${r.objectiveSeconds}`, r);
  }
  const runs = (field) =>
    h.runs.map((r) => ({
      label: pairLabel(r),
      points: r.points.filter((p) => typeof p[field] === 'number').map((p) => [p.at, p[field]]),
    }));
  return {
    age: [
      ...h.rpo.map((r) => ({ label: pairLabel(r), points: r.points })),
      ...[...objectives.values()].map((r) => ({
        label: `objective ${r.job ?? ''}`.trim(),
        points: [
          [from, r.objectiveSeconds],
          [to, r.objectiveSeconds],
        ],
        style: 'dashed',
        color: havenCharts.FAIL,
      })),
    ],
    bytes: runs('bytesSent'),
    duration: runs('durationSeconds'),
    throughput: runs('throughput'),
    drills: [
      ...h.drills.map((d) => ({
        label: `${d.server} → ${d.store}`,
        points: d.points
          .filter((p) => p.result === 'pass' && p.recoverySeconds !== null)
          .map((p) => [p.at, p.recoverySeconds]),
      })),
      {
        label: 'failed drills',
        points: h.drills
          .flatMap((d) =>
            d.points.filter((p) => p.result === 'fail').map((p) => [p.at, p.recoverySeconds ?? 0]),
          )
          .sort(byTime),
        style: 'points',
        color: havenCharts.FAIL,
      },
    ],
    capacity: h.capacity.flatMap((c) => [
      { label: `${c.target} used`, points: c.points.map((p) => [p.at, p.usedBytes]) },
      { label: `${c.target} size`, points: c.points.map((p) => [p.at, p.totalBytes]), style: 'dashed' },
    ]),
  };
}

const CHARTS = {
  age: ['seconds', 'No copies in this window.'],
  bytes: ['bytes', 'No copies in this window.'],
  duration: ['seconds', 'No copies in this window.'],
  throughput: ['rate', 'No copies in this window.'],
  drills: ['seconds', 'No drills in this window.'],
  capacity: ['bytes', 'No target has reported its space in this window.'],
};

async function loadTrends() {
  const problem = $('trends-error');
  problem.hidden = true;
  await panelLoad('trends', problem, async () => {
    const h = await panels.api(`/api/history?days=${panels.days}`);
    const series = trendSeries(h);
    for (const [name, [unit, empty]] of Object.entries(CHARTS)) {
      havenCharts.render($(`chart-${name}`), series[name], unit, empty);
    }
    $('trends').dataset.loaded = h.to;
  });
}

// ---- Restore points -----------------------------------------------------------------------

function testedCell(t) {
  if (!t) return el('td', {}, badge('untested', 'none'));
  return el(
    'td',
    { title: t.source === 'store' ? 'recorded in the store' : 'from this host’s drill runs' },
    badge(t.result),
    ` ${t.kind} `,
    fmtTime(t.at),
    `, ${havenFormat.duration(t.seconds * 1000)}`,
  );
}

function restoreBlock(p) {
  const head = el('h3', {}, pairLabel(p), p.job ? el('span', { class: 'muted' }, ` ${p.job}`) : null);
  let body;
  if (p.error)
    body = el(
      'p',
      { class: 'message error' },
      `${p.error.message} (${p.error.code})`,
      p.error.hint ? ` ${p.error.hint}` : '',
    );
  else if (p.generations === null)
    body = el('p', { class: 'muted' }, 'This target lists only its newest copy (an older Haven).');
  else if (p.generations.length === 0) body = el('p', { class: 'muted' }, 'No copy at this target yet.');
  else {
    const table = el(
      'table',
      { class: 'cards restore-table' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ...['Copy', 'Taken at', 'Mode', 'Size', 'Changed', 'Tested'].map((h) => el('th', {}, h)),
        ),
      ),
      el('tbody', {}),
    );
    const headers = [...table.tHead.rows[0].cells].map((th) => th.textContent);
    for (const g of p.generations) {
      const row = el(
        'tr',
        { 'data-generation-id': g.id, 'data-seq': g.seq, 'data-tested': g.tested?.result ?? 'none' },
        el('td', {}, `_${g.seq}`),
        el('td', {}, fmtTime(g.takenAt)),
        el('td', {}, g.mode),
        el('td', {}, havenFormat.bytes(g.sizeBytes)),
        el('td', {}, havenFormat.bytes(g.deltaBytes)),
        testedCell(g.tested),
      );
      [...row.cells].forEach((td, i) => {
        td.dataset.label = headers[i];
      });
      table.tBodies[0].append(row);
    }
    body = table;
  }
  return el('div', { class: 'restore', 'data-server': p.server, 'data-target': p.target }, head, body);
}

async function loadRestorePoints(fresh) {
  const box = $('restore-points');
  await panelLoad('restore points', box, async () => {
    const list = await panels.api(`/api/restore-points${fresh ? '?fresh=1' : ''}`);
    box.replaceChildren(
      ...(list.length ? list.map(restoreBlock) : [el('p', { class: 'muted' }, 'No protected servers.')]),
    );
    const asked = list.map((p) => p.askedAt).sort()[0];
    $('restore-asked').textContent = asked
      ? `as the targets said at ${havenFormat.time(new Date(asked))}`
      : '';
    box.dataset.loaded = 'true';
  });
}

// ---- Lifecycle ----------------------------------------------------------------------------

function stopPanels() {
  clearInterval(panels.timer);
  clearTimeout(panels.soon);
  panels.timer = null;
  panels.soon = null;
}

const havenPanels = {
  /** The API caller of app.js, what to do on a refused token, and the class that signals it. */
  bind(api, onUnauthorized, Unauthorized) {
    panels.api = api;
    panels.onUnauthorized = onUnauthorized;
    panels.Unauthorized = Unauthorized;
  },
  tiles: renderTiles,
  start() {
    stopPanels();
    loadTrends();
    loadRestorePoints(false);
    panels.timer = setInterval(() => {
      loadTrends();
      loadRestorePoints(false);
    }, PANEL_REFRESH_MS);
  },
  /** After a run finished: trends and restore points again, once for a burst of runs. */
  soon() {
    if (panels.soon) return;
    panels.soon = setTimeout(() => {
      panels.soon = null;
      loadTrends();
      loadRestorePoints(true);
    }, 1000);
  },
  stop: stopPanels,
  /** No token: nothing of the data may stay on the page. */
  clear() {
    stopPanels();
    for (const tile of document.querySelectorAll('[data-tile]')) {
      tile.querySelector('.value').textContent = '–';
      delete tile.dataset.kind;
      tile.title = '';
    }
    for (const c of document.querySelectorAll('[data-chart]')) {
      c.chart?.destroy();
      c.chart = null;
      c.replaceChildren();
      delete c.dataset.series;
    }
    delete $('trends').dataset.loaded;
    $('trends-error').hidden = true;
    $('restore-points').replaceChildren();
    delete $('restore-points').dataset.loaded;
    $('restore-asked').textContent = '';
  },
  onWindowChange(days) {
    panels.days = days;
    loadTrends();
  },
  refreshRestorePoints() {
    loadRestorePoints(true);
  },
};

window.havenPanels = havenPanels;
