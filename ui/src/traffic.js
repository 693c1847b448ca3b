// Traffic: per service, request rate, error rate and p99 over time, from what the dataplanes'
// heartbeats report (GET /v1/metrics/services), refreshed every 10 s. Every version created in the
// window is a dashed mark on the time axis, so the effect of a change is one look.
import {html, useEffect, useRef, useState} from './preact-htm.js';
import uPlot from './uplot.js';
import {get, query} from './api.js';
import {ErrorBox, num, pct, useLoad} from './ui.js';

const WINDOWS = [['5m', '5 min'], ['15m', '15 min'], ['1h', '1 hour']];
const METRICS = [
  {key: 'rps', label: 'Requests/s', fmt: v => num(v, 1), cls: 'rps'},
  {key: 'error_rate', label: 'Error rate', fmt: v => pct(v), cls: 'err'},
  {key: 'p99_ms', label: 'p99 (ms)', fmt: v => num(v, 0), cls: 'p99'},
];
// the colours of the series (uPlot draws on a canvas, which CSS does not reach)
const COLOURS = {rps: '#2563eb', error_rate: '#dc2626', p99_ms: '#7c3aed'};

// The series with a null inserted wherever buckets are missing (no report): a gap, not a slope.
function withGaps(series, key, resolution) {
  const xs = [], ys = [];
  for (let i = 0; i < series.t.length; i++) {
    if (i > 0 && series.t[i] - series.t[i - 1] > resolution * 1.5) {
      xs.push((series.t[i - 1] + resolution) / 1000);
      ys.push(null);
    }
    xs.push(series.t[i] / 1000);
    ys.push(series[key][i]);
  }
  return [xs, ys];
}

// A uPlot plugin drawing the version marks.
function versionMarks(versions) {
  return {
    hooks: {
      draw: u => {
        const ctx = u.ctx;
        const {top, height, left, width} = u.bbox;
        ctx.save();
        ctx.strokeStyle = '#b45309';
        ctx.fillStyle = '#b45309';
        ctx.lineWidth = uPlot.pxRatio;
        ctx.setLineDash([4 * uPlot.pxRatio, 3 * uPlot.pxRatio]);
        ctx.font = `${11 * uPlot.pxRatio}px system-ui, sans-serif`;
        ctx.textBaseline = 'top';
        versions.forEach((v, i) => {
          const x = Math.round(u.valToPos(v.t / 1000, 'x', true));
          if (x < left || x > left + width) return;
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
          // labels step down, so that versions made close together stay readable
          ctx.fillText('v' + v.version, x + 3 * uPlot.pxRatio, top + (2 + (i % 3) * 13) * uPlot.pxRatio);
        });
        ctx.restore();
      },
    },
  };
}

function Chart({metric, series, resolution, versions, range}) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    const [xs, ys] = withGaps(series, metric.key, resolution);
    const width = Math.max(200, el.clientWidth);
    const opts = {
      width,
      height: 160,
      legend: {show: false},
      cursor: {drag: {x: false, y: false}},
      scales: {x: {time: true, range: () => range}, y: {range: (u, min, max) => [0, Math.max(max || 0, metric.key === 'error_rate' ? 0.01 : 1) * 1.1]}},
      axes: [{size: 30}, {size: 52, values: (u, vals) => vals.map(v => metric.key === 'error_rate' ? (v * 100).toFixed(1) + '%' : String(+v.toFixed(2)))}],
      series: [{}, {label: metric.label, stroke: COLOURS[metric.key], width: 2, fill: COLOURS[metric.key] + '22', spanGaps: false, points: {show: xs.length <= 60, size: 5}}],
      plugins: [versionMarks(versions)],
    };
    const plot = new uPlot(opts, [xs, ys], el);
    const ro = new ResizeObserver(() => plot.setSize({width: Math.max(200, el.clientWidth), height: 160}));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [series, versions, range[0], range[1]]);
  return html`<div class="chart" ref=${box}></div>`;
}

function last(arr) {
  for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null && arr[i] !== undefined) return arr[i];
  return null;
}

function Service({id, series, resolution, versions, range}) {
  const total = series.requests.reduce((a, b) => a + (b || 0), 0);
  const errors = series.errors.reduce((a, b) => a + (b || 0), 0);
  const maxRps = series.rps.reduce((a, b) => Math.max(a, b || 0), 0);
  return html`<article class="service" data-service=${id} data-requests=${total} data-points=${series.t.length} data-max-rps=${maxRps}>
    <h2>${id}</h2>
    <p class="summary">${total} requests, ${errors} errors in the window · last: ${num(last(series.rps), 1)} req/s, ${pct(last(series.error_rate))} errors, p99 ${num(last(series.p99_ms), 0)} ms</p>
    <div class="charts">
      ${METRICS.map(m => html`<figure class=${'metric metric-' + m.cls}><figcaption>${m.label}</figcaption>
        <${Chart} metric=${m} series=${series} resolution=${resolution} versions=${versions} range=${range} /></figure>`)}
    </div>
  </article>`;
}

export function TrafficPage() {
  const [since, setSince] = useState('5m');
  const [data, error] = useLoad(() => get('/v1/metrics/services' + query({since})), [since], 10000);
  const services = data ? Object.keys(data.services).sort() : [];
  const span = data ? {'5m': 300e3, '15m': 900e3, '1h': 3600e3}[since] : 0;
  const range = data ? [(data.now_ms - Math.min(span, data.keep_ms)) / 1000, data.now_ms / 1000] : [0, 0];
  return html`<section data-page="traffic">
    <div class="page-head">
      <h1>Traffic</h1>
      <div class="filters">
        ${WINDOWS.map(([w, label]) => html`<button type="button" class=${since === w ? 'active' : ''} onClick=${() => setSince(w)}>${label}</button>`)}
      </div>
    </div>
    <p class="muted">Summed over the fleet from the dataplanes' heartbeats, ${data ? data.resolution_ms / 1000 : 10} s per point, refreshed every 10 s. Dashed lines mark new versions.</p>
    <${ErrorBox} error=${error} />
    ${data && !services.length ? html`<p class="muted">No dataplane has reported traffic in this window.</p>` : null}
    ${data ? services.map(id => html`<${Service} key=${id} id=${id} series=${data.services[id]} resolution=${data.resolution_ms} versions=${data.versions || []} range=${range} />`) : null}
  </section>`;
}
