/**
 * The dashboard's formatting and charts. Times for people in Haven's one style,
 * `2026-12-05 21:15:03` in the browser's zone (named in the page's header); charts drawn with
 * uPlot (served from the daemon, never a CDN). Each chart's uPlot instance is kept on its
 * container as `.chart`, so what it shows can be read back (the dashboard test compares it with
 * the API). Exposes `havenFormat` and `havenCharts` to app.js.
 */

const pad = (n, w = 2) => String(n).padStart(w, '0');

const havenFormat = {
  /** `2026-12-05 21:15:03`, local time. */
  time(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  },

  /** The zone local times are in, e.g. `Europe/Berlin`. */
  zone() {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  },

  bytes(n) {
    if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = Math.abs(n);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    const sign = n < 0 ? '-' : '';
    return `${sign}${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
  },

  duration(ms) {
    if (typeof ms !== 'number' || !Number.isFinite(ms)) return '–';
    const s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  },
};

const PALETTE = [
  '#0969da',
  '#1a7f37',
  '#8250df',
  '#bf3989',
  '#9a6700',
  '#0550ae',
  '#116329',
  '#953800',
  '#6e7781',
];
const FAIL = '#cf222e';

/** Tick labels for a time axis: dates for day steps, else hours with the date where it changes. */
function timeTicks(_u, splits, _axis, _space, incr) {
  let lastDay = '';
  return splits.map((v) => {
    const d = new Date(v * 1000);
    const day = havenFormat.time(d).slice(0, 10);
    if (incr >= 86400) return day;
    const label = havenFormat.time(d).slice(11, 16);
    const withDay = day !== lastDay ? `${label}\n${day}` : label;
    lastDay = day;
    return withDay;
  });
}

/** Tick steps people read at a glance: whole seconds, minutes, hours, days. */
const SECOND_STEPS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
];
/** Powers of two from 1 B to 1 PiB: whole KiB, MiB, GiB. */
const BYTE_STEPS = Array.from({ length: 51 }, (_, i) => 2 ** i);
const AXIS_STEPS = { seconds: SECOND_STEPS, bytes: BYTE_STEPS, rate: BYTE_STEPS };

const VALUE_FORMATS = {
  seconds: (v) => havenFormat.duration(v * 1000),
  bytes: (v) => havenFormat.bytes(v),
  rate: (v) => `${havenFormat.bytes(v)}/s`,
};

/**
 * A series as the chart shows it: `points` [[t, v], …] (t in unix seconds), drawn as a line with
 * points, as points alone (`style: 'points'`), or dashed (`style: 'dashed'`, an objective).
 */
function seriesOptions(s, i, format) {
  const color = s.color ?? PALETTE[i % PALETTE.length];
  const base = {
    label: s.label,
    stroke: color,
    width: 2,
    spanGaps: true,
    value: (_u, v) => (v === null || v === undefined ? '–' : format(v)),
    points: { show: true, size: 5, fill: color },
  };
  if (s.style === 'points')
    return { ...base, paths: () => null, points: { show: true, size: 9, fill: color } };
  if (s.style === 'dashed') return { ...base, dash: [8, 6], width: 1.5, points: { show: false } };
  return base;
}

function chartWidth(container) {
  return Math.max(200, Math.floor(container.clientWidth || 300));
}

const observers = new WeakMap();

const havenCharts = {
  /**
   * Draws (or redraws) a chart in `container` from `series` [{label, points, style?, color?}],
   * values formatted as `unit` (seconds, bytes or rate); with no points at all, says `empty`.
   */
  render(container, series, unit, empty) {
    container.chart?.destroy();
    container.chart = null;
    container.replaceChildren();
    const shown = series.filter((s) => s.points.length > 0);
    container.dataset.series = String(shown.length);
    if (shown.length === 0) {
      const p = document.createElement('p');
      p.className = 'muted chart-empty';
      p.textContent = empty;
      container.append(p);
      return null;
    }
    const format = VALUE_FORMATS[unit];
    // One x axis for all: uPlot.join aligns the series' own times, leaving gaps elsewhere.
    const data = uPlot.join(shown.map((s) => [s.points.map((p) => p[0]), s.points.map((p) => p[1])]));
    const opts = {
      width: chartWidth(container),
      height: 220,
      scales: { x: { time: true } },
      series: [
        {
          label: 'time',
          value: (_u, v) => (v === null || v === undefined ? '–' : havenFormat.time(new Date(v * 1000))),
        },
        ...shown.map((s, i) => seriesOptions(s, i, format)),
      ],
      axes: [
        { values: timeTicks, size: 46, space: 90 },
        { values: (_u, splits) => splits.map(format), size: 78, incrs: AXIS_STEPS[unit] },
      ],
      legend: { live: true },
    };
    const chart = new uPlot(opts, data, container);
    container.chart = chart;
    if (!observers.has(container) && typeof ResizeObserver === 'function') {
      const ro = new ResizeObserver(() =>
        container.chart?.setSize({ width: chartWidth(container), height: 220 }),
      );
      ro.observe(container);
      observers.set(container, ro);
    }
    return chart;
  },

  FAIL,
};

window.havenFormat = havenFormat;
window.havenCharts = havenCharts;
