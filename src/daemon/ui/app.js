/**
 * The Haven dashboard: plain DOM code, no framework, no build step. Every data call goes to the
 * daemon's API with the bearer token, which comes from the URL fragment (`#token=…`, removed from
 * the address bar at once and kept in sessionStorage for this tab) or from the form. Text reaches
 * the DOM only through textContent and attributes, never as markup. Formatting and charts are in
 * charts.js, the summary tiles, trends and restore points in panels.js.
 */

const TOKEN_KEY = 'haven-token';
const REFRESH_MS = 5000;
const RECONNECT_MS = 3000;

const state = {
  token: null,
  timer: null,
  /** Aborts the progress stream and any request of a token that is no longer in use. */
  abort: null,
  /** runId|server|target → the newest `progress` update. */
  progress: new Map(),
  refreshing: false,
  refreshAgain: false,
  refreshSoon: null,
  /** Where the daemon keeps the token (GET /ui/setup.json), to name it to whoever needs it. */
  tokenFile: null,
};

class Unauthorized extends Error {}

// ---- DOM helpers --------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `data-*`, …) and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fillTable(id, rows, emptyText, columns) {
  const table = $(id);
  const body = table.tBodies[0];
  if (rows.length === 0) {
    body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: columns }, emptyText)));
    return;
  }
  // Each cell names its column: on a narrow screen rows become cards with these labels (app.css).
  const headers = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  for (const row of rows) {
    [...row.cells].forEach((td, i) => {
      if (headers[i]) td.dataset.label = headers[i];
    });
  }
  body.replaceChildren(...rows);
}

// ---- Formatting ---------------------------------------------------------------------------

const fmtBytes = (n) => havenFormat.bytes(n);
const fmtDuration = (ms) => havenFormat.duration(ms);

/** A <time> with the exact instant in `datetime` and Haven's local rendering, how long ago or soon. */
function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const delta = d.getTime() - Date.now();
  const rel =
    Math.abs(delta) < 1000 ? 'now' : delta > 0 ? `in ${fmtDuration(delta)}` : `${fmtDuration(delta)} ago`;
  return el('time', { datetime: d.toISOString(), title: d.toISOString() }, `${havenFormat.time(d)} (${rel})`);
}

function badge(text, kind) {
  return el('span', { class: `badge ${kind ?? text ?? ''}` }, text ?? '–');
}

// ---- Talking to the daemon ----------------------------------------------------------------

async function api(path, init = {}) {
  const r = await fetch(path, {
    ...init,
    cache: 'no-store',
    headers: { authorization: `Bearer ${state.token}`, accept: 'application/json' },
    signal: state.abort?.signal,
  });
  if (r.status === 401) throw new Unauthorized();
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const e = body?.error;
    throw new Error(e ? `${e.message}${e.code ? ` (${e.code})` : ''}` : `${path}: HTTP ${r.status}`);
  }
  return body;
}

function showMessage(text, kind) {
  const m = $('message');
  m.textContent = text ?? '';
  m.className = `message ${kind ?? ''}`;
  m.hidden = !text;
}

async function refresh() {
  if (!state.token) return;
  if (state.refreshing) {
    state.refreshAgain = true;
    return;
  }
  state.refreshing = true;
  try {
    const [status, jobs, runs, problems, events, summary] = await Promise.all([
      api('/api/status'),
      api('/api/jobs'),
      api('/api/runs?limit=20'),
      api('/api/problems'),
      api('/api/events?limit=20'),
      api('/api/summary'),
    ]);
    havenPanels.tiles(summary);
    renderStatus(status);
    renderJobs(jobs);
    renderRuns(runs);
    renderProblems(problems, events);
    renderEvents(events);
    $('data').hidden = false;
    $('token-form').hidden = true;
    $('forget').hidden = false;
    $('updated').textContent = `updated ${havenFormat.time(new Date()).slice(11)}`;
    if (document.body.dataset.state !== 'ready') {
      document.body.dataset.state = 'ready';
      showMessage('');
      startStream();
      havenPanels.start();
    }
    if ($('message').classList.contains('unreachable')) showMessage('');
  } catch (e) {
    if (e instanceof Unauthorized) {
      needToken(true);
    } else if (e?.name !== 'AbortError') {
      showMessage(`Cannot read from the daemon: ${e?.message ?? e}. Retrying.`, 'error unreachable');
    }
  } finally {
    state.refreshing = false;
    if (state.refreshAgain) {
      state.refreshAgain = false;
      refresh();
    }
  }
}

/** Many frames in a row (a run finishing its servers) make one refresh. */
function refreshSoon() {
  if (state.refreshSoon) return;
  state.refreshSoon = setTimeout(() => {
    state.refreshSoon = null;
    refresh();
  }, 300);
}

// ---- Live progress: server-sent events read with fetch (EventSource cannot send headers) ----

async function startStream() {
  const signal = state.abort?.signal;
  let refused = '';
  while (state.token && !signal?.aborted) {
    try {
      const r = await fetch('/api/progress', {
        cache: 'no-store',
        headers: { authorization: `Bearer ${state.token}`, accept: 'text/event-stream' },
        signal,
      });
      if (r.status === 401) {
        needToken(true);
        return;
      }
      if (r.status === 429 || r.status === 503) {
        // Too many streams (this address's share, or all): the daemon says which limit.
        const body = await r.json().catch(() => null);
        refused = body?.error?.message ?? `HTTP ${r.status}`;
        throw new Error(refused);
      }
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      refused = '';
      setConnection('live', 'live updates');
      state.progress.clear();
      renderProgress();
      await readFrames(r.body, handleFrame);
    } catch (e) {
      if (e?.name === 'AbortError' || signal?.aborted) return;
    }
    setConnection(
      'offline',
      refused ? `live updates refused (${refused}); retrying` : 'live updates lost; reconnecting',
    );
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

/**
 * The event-stream format (HTML, "Server-sent events"): frames end with a blank line; `event:`
 * names the frame, `data:` lines (joined by newlines) carry it, lines starting with `:` are
 * comments (the daemon's keep-alives).
 */
async function readFrames(body, onFrame) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = 'message';
      const data = [];
      for (const line of frame.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') kind = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) {
        try {
          onFrame(kind, JSON.parse(data.join('\n')));
        } catch {
          // A frame that is not JSON is not ours to show; the tables still refresh on a timer.
        }
      }
      end = buffer.indexOf('\n\n');
    }
  }
}

const progressKey = (u) => `${u.runId}|${u.server}|${u.target}`;

function handleFrame(kind, data) {
  if (kind === 'snapshot') {
    for (const u of data.progress ?? []) state.progress.set(progressKey(u), u);
    renderProgress();
  } else if (kind === 'update') {
    if (data.type === 'progress') {
      state.progress.set(progressKey(data), data);
    } else if (data.type === 'server.finished') {
      state.progress.delete(progressKey(data));
    } else if (data.type === 'run.finished') {
      for (const [k, u] of state.progress) if (u.runId === data.runId) state.progress.delete(k);
    }
    renderProgress();
    if (data.type !== 'progress') refreshSoon();
    // A finished run adds to the trends and may have written a restore point.
    if (data.type === 'run.finished') havenPanels.soon();
  } else if (kind === 'event') {
    refreshSoon();
  }
}

function setConnection(kind, text) {
  const c = $('connection');
  c.textContent = text;
  c.className = `connection ${kind}`;
}

// ---- Tables -------------------------------------------------------------------------------

/** A continuous lane's state and lag, as `haven status` words it; '–' for a periodic pair. */
function laneCell(l) {
  if (!l) return '–';
  const lag = l.lagMs === null ? '' : fmtDuration(l.lagMs);
  return [
    badge(l.state, `lane ${l.state}`),
    lag ? (l.state === 'behind' ? ` ${lag}` : `, lag ${lag}`) : '',
    l.pendingBytes > 0 ? ` (${fmtBytes(l.pendingBytes)})` : '',
    l.errorCode ? ` ${l.errorCode}` : '',
    l.stale ? el('span', { class: 'muted' }, ` protector gone (was ${l.recordedState})`) : '',
  ];
}

function renderStatus(rows) {
  fillTable(
    'status',
    rows.map((r) => {
      const breached = r.rpo === 'breached' || r.rpo === 'never';
      let rpo;
      if (r.rpo === 'none') rpo = [r.ageMs === null ? '–' : fmtDuration(r.ageMs), ' / no objective'];
      else if (r.rpo === 'never')
        rpo = [el('span', { class: 'mark' }, '●'), ' never copied / ', fmtDuration(r.rpoMs)];
      else
        rpo = [
          breached ? el('span', { class: 'mark', title: 'objective breached' }, '●') : null,
          `${fmtDuration(r.ageMs)} / ${fmtDuration(r.rpoMs)}`,
          breached ? ' breached' : '',
        ];
      return el(
        'tr',
        { 'data-server': r.server, 'data-target': r.target, class: breached ? 'breached' : null },
        el('td', {}, r.server),
        el('td', {}, r.target),
        el('td', {}, r.job ?? '–'),
        el('td', { title: r.lastGoodGeneration ?? '' }, fmtTime(r.lastGoodAt)),
        el('td', { class: `rpo ${r.rpo}` }, rpo),
        el(
          'td',
          { class: 'lane', title: r.lane ? (r.lane.errorMessage ?? `recorded ${r.lane.updatedAt}`) : '' },
          laneCell(r.lane),
        ),
        el('td', {}, fmtTime(r.nextRun)),
        el(
          'td',
          { class: 'result', title: r.lastErrorMessage ?? '' },
          badge(r.lastResult),
          r.lastErrorCode ? ` ${r.lastErrorCode}` : '',
          r.lastRunId ? el('span', { class: 'muted' }, ` run ${r.lastRunId}`) : '',
        ),
      );
    }),
    'No protected servers.',
    8,
  );
}

function renderJobs(jobs) {
  fillTable(
    'jobs',
    jobs.map((j) =>
      el(
        'tr',
        { 'data-job': j.name, class: j.running ? 'running' : null },
        el('td', {}, j.name),
        el('td', {}, (j.targets ?? []).join(', ')),
        el('td', {}, j.schedule ?? 'on demand'),
        el('td', { class: 'next-run' }, j.nextRun ? fmtTime(j.nextRun) : j.schedule ? '–' : 'on demand'),
        el(
          'td',
          {},
          j.lastRun
            ? [
                badge(j.lastRun.status),
                ' ',
                el('span', { class: 'muted' }, `run ${j.lastRun.id} `),
                fmtTime(j.lastRun.startedAt),
              ]
            : '–',
        ),
        el(
          'td',
          { class: 'actions' },
          j.running
            ? el('button', { type: 'button', 'data-cancel': j.running.runId }, 'Cancel')
            : el('button', { type: 'button', 'data-run': j.name }, 'Run now'),
        ),
      ),
    ),
    'No jobs in the configuration.',
    6,
  );
}

function renderRuns(runs) {
  fillTable(
    'runs',
    runs.map((r) => {
      const end = r.finishedAt ? new Date(r.finishedAt).getTime() : Date.now();
      return el(
        'tr',
        { 'data-run-id': r.id, 'data-status': r.status },
        el('td', {}, `#${r.id}`),
        el('td', {}, r.kind),
        el('td', {}, r.job ?? '–'),
        el('td', {}, r.trigger),
        el('td', {}, fmtTime(r.startedAt)),
        el('td', {}, fmtDuration(end - new Date(r.startedAt).getTime())),
        el('td', { title: r.errorMessage ?? '' }, badge(r.status), r.errorCode ? ` ${r.errorCode}` : ''),
        el(
          'td',
          { class: 'servers' },
          (r.servers ?? []).map((s) =>
            el(
              'div',
              { title: s.errorMessage ?? '' },
              `${s.server} → ${s.target} `,
              badge(s.status),
              s.bytesSent ? ` ${fmtBytes(s.bytesSent)} sent` : '',
            ),
          ),
        ),
      );
    }),
    'No runs yet.',
    8,
  );
}

function renderProblems(problems, events) {
  const byId = new Map(events.map((e) => [e.id, e]));
  fillTable(
    'problems',
    problems.map((p) =>
      el(
        'tr',
        { 'data-problem': p.dedupKey, class: `severity-${p.severity}` },
        el('td', {}, badge(p.severity)),
        el(
          'td',
          {},
          el('code', {}, p.dedupKey),
          byId.get(p.lastEventId) ? ` ${byId.get(p.lastEventId).message}` : '',
        ),
        el('td', {}, fmtTime(p.openedAt)),
        el('td', {}, fmtTime(p.lastSeenAt)),
        el('td', {}, p.occurrences),
      ),
    ),
    'No open problems.',
    5,
  );
}

function renderEvents(events) {
  fillTable(
    'events',
    events.map((e) =>
      el(
        'tr',
        { 'data-event-id': e.id, class: `severity-${e.severity}` },
        el('td', {}, fmtTime(e.at)),
        el('td', {}, badge(e.severity)),
        el('td', {}, e.type),
        el('td', {}, e.server ?? ''),
        el('td', {}, e.job ?? ''),
        el('td', {}, e.message),
      ),
    ),
    'No events.',
    6,
  );
}

function renderProgress() {
  const rows = [...state.progress.values()].map((u) => {
    const p = u.progress ?? {};
    const pct = p.bytesTotal > 0 ? Math.min(100, Math.floor((100 * p.bytesDone) / p.bytesTotal)) : null;
    return el(
      'tr',
      { 'data-run-id': u.runId, 'data-server': u.server, 'data-target': u.target },
      el('td', {}, `#${u.runId} ${u.job}`),
      el('td', {}, u.server),
      el('td', {}, u.target),
      el('td', {}, p.disk ? `${p.phase} ${p.disk}` : p.phase),
      el(
        'td',
        { class: 'done' },
        el('progress', { max: 100, value: pct ?? undefined, 'aria-label': `${u.server} → ${u.target}` }),
        el(
          'span',
          {},
          `${fmtBytes(p.bytesDone)} of ${fmtBytes(p.bytesTotal)}${pct === null ? '' : ` (${pct} %)`}`,
        ),
      ),
      el('td', {}, fmtBytes(p.bytesSent)),
      el('td', {}, `${fmtBytes(p.rate)}/s`),
      el('td', {}, typeof p.etaMs === 'number' ? fmtDuration(p.etaMs) : '–'),
    );
  });
  fillTable('progress', rows, 'No copy running.', 8);
}

// ---- Actions ------------------------------------------------------------------------------

async function act(button, what, path) {
  button.disabled = true;
  try {
    const r = await api(path, { method: 'POST' });
    showMessage(
      what === 'run' ? `Run #${r.runId} of ${r.job} started.` : `Cancelling run #${r.runId}.`,
      'info',
    );
  } catch (e) {
    if (e instanceof Unauthorized) needToken(true);
    else
      showMessage(
        `Could not ${what === 'run' ? 'start the run' : 'cancel the run'}: ${e?.message ?? e}`,
        'error',
      );
  } finally {
    button.disabled = false;
    refresh();
  }
}

function onClick(ev) {
  const button = ev.target.closest('button');
  if (!button) return;
  if (button.dataset.run !== undefined) {
    act(button, 'run', `/api/jobs/${encodeURIComponent(button.dataset.run)}/runs`);
  } else if (button.dataset.cancel !== undefined) {
    const id = button.dataset.cancel;
    if (window.confirm(`Cancel run #${id}? Its copies resume from what the target staged next time.`)) {
      act(button, 'cancel', `/api/runs/${encodeURIComponent(id)}/cancel`);
    }
  }
}

// ---- The token ----------------------------------------------------------------------------

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

/** `#token=…` wins over a stored token; the fragment leaves the address bar (and history). */
function tokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
  if (!m) return null;
  window.history.replaceState(null, '', window.location.pathname + window.location.search);
  try {
    return decodeURIComponent(m[1]).trim() || null;
  } catch {
    return null;
  }
}

function stop() {
  state.abort?.abort();
  state.abort = null;
  clearInterval(state.timer);
  state.timer = null;
  state.progress.clear();
  havenPanels.stop();
}

/** Shows the form and no data: none was given, or the daemon refused it. */
function needToken(refused) {
  stop();
  state.token = null;
  storage()?.removeItem(TOKEN_KEY);
  document.body.dataset.state = 'needs-token';
  $('data').hidden = true;
  for (const id of ['status', 'jobs', 'runs', 'problems', 'events', 'progress'])
    $(id).tBodies[0].replaceChildren();
  havenPanels.clear();
  $('forget').hidden = true;
  $('updated').textContent = '';
  setConnection('offline', '');
  $('token-form').hidden = false;
  const file = state.tokenFile ?? 'the api-token file in the daemon’s state directory';
  showMessage(
    refused
      ? `The daemon refused this token. The dashboard needs the token in ${file} on the daemon’s host.`
      : `The dashboard needs the token: paste the contents of ${file} (on the daemon’s host), or open the page as /#token=<token>.`,
    'error needs-token',
  );
  $('token-input').focus();
}

function start(token) {
  stop();
  state.token = token;
  storage()?.setItem(TOKEN_KEY, token);
  state.abort = new AbortController();
  document.body.dataset.state = 'loading';
  showMessage('Loading…', 'info');
  havenPanels.bind(api, () => needToken(true), Unauthorized);
  refresh();
  state.timer = setInterval(refresh, REFRESH_MS);
}

/** Where the token is: the daemon says so publicly (it may be under HAVEN_STATE_DIR, not /var/lib/haven). */
async function loadSetup() {
  try {
    const r = await fetch('/ui/setup.json', { cache: 'no-store' });
    const setup = r.ok ? await r.json() : null;
    if (typeof setup?.tokenFile === 'string') {
      state.tokenFile = setup.tokenFile;
      $('token-input').placeholder = `the contents of ${setup.tokenFile}`;
    }
  } catch {
    // An older daemon, or none: the message names the file in general terms.
  }
}

async function boot() {
  $('zone').textContent = `times in ${havenFormat.zone()}`;
  await loadSetup();
  document.addEventListener('click', onClick);
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token-input').value.trim();
    $('token-input').value = '';
    if (token) start(token);
  });
  $('forget').addEventListener('click', () => needToken(false));
  $('window').addEventListener('change', () => havenPanels.onWindowChange(Number($('window').value)));
  $('restore-refresh').addEventListener('click', () => havenPanels.refreshRestorePoints());
  window.addEventListener('hashchange', () => {
    const token = tokenFromFragment();
    if (token) start(token);
  });
  const token = tokenFromFragment() ?? storage()?.getItem(TOKEN_KEY);
  if (token) start(token);
  else needToken(false);
}

boot();
