// The Trellis dashboard: one page over the read-only JSON routes of coordinator/dashboard/
// dashboard_api.h, or, in a report written by `trellis report`, over the data built into the
// file (#trellis-static). Plain JS and uPlot, nothing loaded from anywhere.
'use strict';

const STATIC = JSON.parse(document.getElementById('trellis-static').textContent);
const TOKEN = new URLSearchParams(location.search).get('token');
const POLL_MS = 2000;
const ROW_HEIGHT = 24;
const MAX_CURVES = 1000;
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#be185d',
                '#4d7c0f', '#7c3aed', '#b45309'];

// What the tests and the benchmark read: counts of what is on screen.
window.trellis = { rowsShown: 0, curvesDrawn: 0, version: null, view: '' };

const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}
function fmt(v) {
  if (v == null) return '';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
  }
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}
const enc = encodeURIComponent;

// ---- data --------------------------------------------------------------------------------
async function api(path, params = {}) {
  if (STATIC) return staticAnswer(path, params);
  const q = new URLSearchParams(params).toString();
  const r = await fetch(path + (q ? '?' + q : ''),
                        { headers: TOKEN ? { Authorization: 'Bearer ' + TOKEN } : {} });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

// A report holds the answers of the routes that do not depend on a selection, and every kept
// trial's document; curves come out of the documents.
function staticAnswer(path, params) {
  if (path in STATIC.responses) return STATIC.responses[path];
  const doc = (n) => {
    const d = STATIC.docs[n];
    if (!d) throw new Error('trial ' + n + ' is not in this report (' + STATIC.note + ')');
    return d;
  };
  if (path === '/api/trial') return doc(params.trial);
  if (path === '/api/curves') {
    const series = {};
    for (const n of params.trials.split(',')) {
      const d = STATIC.docs[n];
      const points = d && d.metrics[params.metric];
      if (points) series[n] = [points.map(p => p[0]), points.map(p => p[1])];
    }
    return { metric: params.metric, series };
  }
  throw new Error('not in this report: ' + path);
}

// The trials table as typed columns: numbers in Float64Array (NaN: none), text as arrays.
function columnsOf(t) {
  const cols = [];
  const add = (key, label, values, numeric) => cols.push({ key, label, values, numeric });
  add('number', '#', Float64Array.from(t.columns.number), true);
  add('state', 'state', t.columns.state.map(i => t.states[i]), false);
  add('epochs', 'epochs', Float64Array.from(t.columns.epochs), true);
  for (const p of t.params) {
    const v = t.columns['params.' + p];
    const numeric = v.every(x => x == null || typeof x === 'number');
    add('params.' + p, p, numeric ? Float64Array.from(v, x => x == null ? NaN : x) : v, numeric);
  }
  for (const m of t.metrics)
    add('final.' + m, m, Float64Array.from(t.columns['final.' + m], x => x == null ? NaN : x), true);
  return cols;
}

// ---- routing ------------------------------------------------------------------------------
let current = null;  // the view on screen: {refresh()} called when the store changed

async function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const view = $('#view');
  try {
    if (parts[0] === 'e' && parts[1] && parts[2] === 't') current = await trialView(view, parts[1], parts[3]);
    else if (parts[0] === 'e' && parts[1]) current = await experimentView(view, parts[1], parts[2] || 'trials');
    else current = await experimentsView(view);
  } catch (e) {
    view.replaceChildren(el('p', { class: 'error' }, String(e.message || e)));
    current = null;
  }
}

function crumbs(...items) {
  $('#crumbs').replaceChildren(...items.flatMap((it, i) => [i ? ' / ' : '', it]));
}

// ---- experiments --------------------------------------------------------------------------
async function experimentsView(view) {
  window.trellis.view = 'experiments';
  crumbs();
  const draw = async () => {
    const { experiments } = await api('/api/experiments');
    const rows = experiments.map(e => el('tr', {},
      el('td', {}, el('a', { href: '#/e/' + enc(e.name) }, e.name)),
      el('td', { class: 'state-' + e.state }, e.state),
      el('td', {}, e.metric + ' (' + e.mode + ')'),
      el('td', {}, e.created_at)));
    view.replaceChildren(el('h2', {}, 'Experiments'),
      experiments.length ? el('table', { class: 'grid panel', id: 'experiments' },
        el('thead', {}, el('tr', {}, ...['name', 'state', 'objective', 'created'].map(h => el('th', {}, h)))),
        el('tbody', {}, ...rows)) : el('p', { class: 'muted' }, 'The store has no experiment yet.'));
  };
  await draw();
  return { refresh: draw };
}

// ---- one experiment ------------------------------------------------------------------------
const TABS = [['trials', 'Trials & curves'], ['history', 'History'], ['parallel', 'Parallel coordinates'],
              ['importance', 'Importance'], ['scheduler', 'Scheduler'], ['compare', 'Compare']];
const selection = new Map();  // experiment -> Set of trial numbers

async function experimentView(view, name, tab) {
  window.trellis.view = 'experiment';
  crumbs(el('a', { href: '#/e/' + enc(name) }, name));
  const selected = selection.get(name) || new Set();
  selection.set(name, selected);
  const state = { name, tab, table: null, cols: null, objective: null, selected };
  const body = el('div');
  const tabs = el('div', { class: 'tabs' }, ...TABS.map(([id, label]) =>
    el('button', { class: id === tab ? 'active' : '', 'data-tab': id,
                   onclick: () => { location.hash = '#/e/' + enc(name) + '/' + id; } }, label)));
  view.replaceChildren(el('h2', { id: 'title' }, name), tabs, body);
  const load = async () => {
    state.table = await api('/api/trials', { experiment: name });
    state.cols = columnsOf(state.table);
    const e = state.table.experiment;
    state.objective = state.cols.find(c => c.key === 'final.' + e.metric) || null;
    const counts = {};
    for (const s of state.cols[1].values) counts[s] = (counts[s] || 0) + 1;
    const byState = Object.entries(counts).map(([s, n]) => n + ' ' + s).join(', ');
    $('#title').textContent = name + ' — ' + state.table.count + ' trials' +
      (byState ? ' (' + byState + ')' : '') + ', ' + e.metric + ' ' + e.mode;
  };
  await load();
  const views = { trials: trialsTab, history: historyTab, parallel: parallelTab,
                  importance: importanceTab, scheduler: schedulerTab, compare: compareTab };
  const shown = await (views[tab] || trialsTab)(body, state);
  return { refresh: async () => { await load(); await shown.refresh(); } };
}

// False when every trial has the same value (NaN equal to NaN).
function varies(c) {
  for (let i = 1; i < c.values.length; i++)
    if (c.values[i] !== c.values[0] && !(c.values[i] !== c.values[i] && c.values[0] !== c.values[0])) return true;
  return c.values.length < 2;
}

// Ascending or descending by one column, NaN and missing last either way.
function sortIndex(index, col, descending) {
  const v = col.values, sign = descending ? -1 : 1;
  if (col.numeric) {
    index.sort((a, b) => {
      const x = v[a], y = v[b];
      if (x !== x) return y !== y ? a - b : 1;
      if (y !== y) return -1;
      return x === y ? a - b : (x < y ? -sign : sign);
    });
  } else {
    index.sort((a, b) => {
      const x = v[a] == null ? '' : String(v[a]), y = v[b] == null ? '' : String(v[b]);
      return x === y ? a - b : (x < y ? -sign : sign);
    });
  }
}

// "<0.1", ">=3", "0.1..0.5", "=2" on numbers; a substring on text.
function makeFilter(col, text) {
  text = text.trim();
  if (!text) return null;
  if (!col.numeric) return (i) => String(col.values[i] ?? '').includes(text);
  const range = text.match(/^(-?[\d.eE+-]+)\s*\.\.\s*(-?[\d.eE+-]+)$/);
  if (range) { const lo = +range[1], hi = +range[2]; return (i) => col.values[i] >= lo && col.values[i] <= hi; }
  const m = text.match(/^(<=|>=|<|>|=)?\s*(-?[\d.eE+-]+)$/);
  if (!m) return () => false;
  const x = +m[2];
  switch (m[1]) {
    case '<': return (i) => col.values[i] < x;
    case '<=': return (i) => col.values[i] <= x;
    case '>': return (i) => col.values[i] > x;
    case '>=': return (i) => col.values[i] >= x;
    default: return (i) => col.values[i] === x;
  }
}

async function trialsTab(body, state) {
  // Shown at first: what tells trials apart. A parameter every trial shares and the
  // throughput metrics are one click away in Columns.
  const THROUGHPUT = new Set(['final.epoch_s', 'final.samples_per_s']);
  const shownCols = new Set(state.cols.filter(c => !THROUGHPUT.has(c.key) &&
    (!c.key.startsWith('params.') || varies(c))).map(c => c.key));
  const known = new Set(state.cols.map(c => c.key));
  const filters = new Map();
  let order = null, sortKey = state.objective ? state.objective.key : 'number';
  let descending = state.objective ? state.table.experiment.mode === 'max' : false;
  let metric = state.table.experiment.metric;

  const scroller = el('div', { class: 'scroller', id: 'trials-scroller' });
  const table = el('table', { class: 'grid', id: 'trials' });
  scroller.append(table);
  const curveBox = el('div', { id: 'curves' });
  const metricSelect = el('select', { id: 'curve-metric' });
  const columnsMenu = el('div', { class: 'menu', hidden: '' });
  const info = el('span', { class: 'muted', id: 'trials-info' });
  const toolbar = el('div', { class: 'toolbar' },
    el('span', { class: 'columns' },
       el('button', { onclick: () => columnsMenu.toggleAttribute('hidden') }, 'Columns ▾'), columnsMenu),
    el('button', { id: 'best-curves', onclick: () => { pickBest(MAX_CURVES); } }, 'Overlay best ' + MAX_CURVES),
    el('button', { onclick: () => { state.selected.clear(); drawRows(); drawCurves(); } }, 'Clear selection'),
    el('button', { id: 'compare-selected', onclick: () => { location.hash = '#/e/' + enc(state.name) + '/compare'; } }, 'Compare selected'),
    info);
  const curvePanel = el('div', { class: 'panel' },
    el('div', { class: 'toolbar' }, 'Learning curves of ', metricSelect,
       el('span', { class: 'muted', id: 'curves-info' })), curveBox);
  body.replaceChildren(toolbar, el('div', { class: 'split' }, scroller, curvePanel));

  function buildColumnsMenu() {
    columnsMenu.replaceChildren(...state.cols.map(c => el('label', {},
      Object.assign(el('input', { type: 'checkbox', onchange: (ev) => {
        if (ev.target.checked) shownCols.add(c.key); else shownCols.delete(c.key);
        drawHead(); drawRows();
      } }), { checked: shownCols.has(c.key) }), ' ', c.key)));
    const metrics = state.table.metrics.length ? state.table.metrics : [metric];
    metricSelect.replaceChildren(...metrics.map(m => el('option', { value: m }, m)));
    metricSelect.value = metrics.includes(metric) ? metric : metrics[0];
    metric = metricSelect.value;
  }
  metricSelect.addEventListener('change', () => { metric = metricSelect.value; drawCurves(); });

  function recompute() {
    const active = [...filters].map(([key, text]) => makeFilter(state.cols.find(c => c.key === key), text)).filter(Boolean);
    const n = state.table.count;
    let index = [];
    for (let i = 0; i < n; i++) if (active.every(f => f(i))) index.push(i);
    const col = state.cols.find(c => c.key === sortKey) || state.cols[0];
    sortIndex(index, col, descending);
    order = index;
    info.textContent = order.length + ' of ' + n + ' trials · ' + state.selected.size + ' selected';
  }

  function drawHead() {
    const cols = state.cols.filter(c => shownCols.has(c.key));
    const head = el('tr', {}, el('th', {}, '✓'), ...cols.map(c => el('th', {
      class: c.numeric ? 'num' : '', 'data-col': c.key, title: c.key,
      onclick: () => {
        performance.mark('sort-start');
        if (sortKey === c.key) descending = !descending; else { sortKey = c.key; descending = false; }
        recompute(); drawHead(); drawRows();
        performance.mark('sort-end');
        performance.measure('sort', 'sort-start', 'sort-end');
      } }, c.label + (sortKey === c.key ? (descending ? ' ▼' : ' ▲') : ''))));
    const filterRow = el('tr', { class: 'filters' }, el('th'), ...cols.map(c => el('th', {},
      Object.assign(el('input', { 'data-filter': c.key, placeholder: c.numeric ? '<, >, a..b' : 'contains',
        onchange: (ev) => { filters.set(c.key, ev.target.value); recompute(); drawRows(); } }),
        { value: filters.get(c.key) || '' }))));
    table.replaceChildren(el('thead', {}, head, filterRow), el('tbody'));
  }

  // Only the rows in view exist in the DOM: a spacer above and below stands for the rest.
  function drawRows() {
    const cols = state.cols.filter(c => shownCols.has(c.key));
    const top = Math.max(0, Math.floor(scroller.scrollTop / ROW_HEIGHT) - 10);
    drawnTop = top;
    const count = Math.ceil(scroller.clientHeight / ROW_HEIGHT) + 20;
    const end = Math.min(order.length, top + count);
    const tbody = table.tBodies[0];
    const rows = [el('tr', { style: 'height:' + top * ROW_HEIGHT + 'px' })];
    for (let k = top; k < end; k++) {
      const i = order[k];
      const number = state.cols[0].values[i];
      const tr = el('tr', { class: 'row' + (state.selected.has(number) ? ' selected' : ''), 'data-trial': number },
        el('td', {}, Object.assign(el('input', { type: 'checkbox' }), { checked: state.selected.has(number) })),
        ...cols.map(c => {
          const v = c.values[i];
          if (c.key === 'number') return el('td', { class: 'num' }, el('a', { href: '#/e/' + enc(state.name) + '/t/' + v }, v));
          if (c.key === 'state') return el('td', { class: 'state-' + v }, v);
          return el('td', { class: c.numeric ? 'num' : '' }, c.numeric && v !== v ? '' : fmt(v));
        }));
      tr.addEventListener('click', (ev) => {
        if (ev.target.tagName === 'A') return;
        if (state.selected.has(number)) state.selected.delete(number); else state.selected.add(number);
        drawRows(); drawCurves();
        info.textContent = order.length + ' of ' + state.table.count + ' trials · ' + state.selected.size + ' selected';
      });
      rows.push(tr);
    }
    rows.push(el('tr', { style: 'height:' + (order.length - end) * ROW_HEIGHT + 'px' }));
    tbody.replaceChildren(...rows);
    window.trellis.rowsShown = end - top;
  }
  // Scrolling redraws only when another stretch of rows comes into view.
  let drawnTop = 0;
  scroller.addEventListener('scroll', () => requestAnimationFrame(() => {
    const top = Math.max(0, Math.floor(scroller.scrollTop / ROW_HEIGHT) - 10);
    if (Math.abs(top - drawnTop) >= 5) drawRows();
  }));

  function pickBest(k) {
    if (!state.objective) return;
    const index = order.filter(i => state.objective.values[i] === state.objective.values[i]);
    sortIndex(index, state.objective, state.table.experiment.mode === 'max');
    state.selected.clear();
    for (const i of index.slice(0, k)) state.selected.add(state.cols[0].values[i]);
    drawRows(); drawCurves();
    info.textContent = order.length + ' of ' + state.table.count + ' trials · ' + state.selected.size + ' selected';
  }

  let plot = null;
  async function drawCurves() {
    performance.mark('curves-start');
    let numbers = [...state.selected];
    const note = $('#curves-info');
    if (!numbers.length) {
      curveBox.replaceChildren(el('p', { class: 'muted' }, 'Select trials in the table (click a row), or overlay the best.'));
      window.trellis.curvesDrawn = 0;
      note.textContent = '';
      return;
    }
    if (numbers.length > MAX_CURVES) numbers = numbers.slice(0, MAX_CURVES);
    const { series } = await api('/api/curves', { experiment: state.name, metric, trials: numbers.join(',') });
    const drawn = numbers.filter(n => series[n]);
    plot = drawLines(curveBox, plot, drawn.map(n => ({ label: 'trial ' + n, points: series[n] })),
                     { title: metric, width: Math.max(300, curveBox.clientWidth || 480), height: 360 });
    window.trellis.curvesDrawn = drawn.length;
    note.textContent = drawn.length + ' trial(s)' + (drawn.length < numbers.length ? ', ' + (numbers.length - drawn.length) + ' without ' + metric : '');
    performance.mark('curves-drawn');
    performance.measure('curves', 'curves-start', 'curves-drawn');
  }
  window.trellis.overlayBest = pickBest;

  buildColumnsMenu();
  recompute(); drawHead(); drawRows();
  performance.mark('trials-rendered');
  requestAnimationFrame(() => setTimeout(() => performance.mark('trials-painted'), 0));
  await drawCurves();
  return {
    refresh: async () => {
      // A column that appeared since (a new metric, a new parameter) is shown.
      for (const c of state.cols) if (!known.has(c.key)) { known.add(c.key); shownCols.add(c.key); }
      buildColumnsMenu(); recompute(); drawHead(); drawRows(); await drawCurves();
    },
  };
}

// Many lines over shared epochs: uPlot wants one x array, so every series is laid on the union
// of epochs, with nulls where it has none. Hovering near a line highlights it and names it.
function drawLines(box, old, lines, { title, width, height }) {
  if (old) old.destroy();
  const xs = [...new Set(lines.flatMap(l => l.points[0]))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  for (const l of lines) {
    const ys = new Array(xs.length).fill(null);
    l.points[0].forEach((x, k) => { ys[at.get(x)] = l.points[1][k]; });
    data.push(ys);
  }
  const tip = $('#tip');
  const many = lines.length > 30;
  const opts = {
    title, width, height,
    legend: { show: false },
    cursor: { focus: { prox: 16 }, points: { show: false } },
    focus: { alpha: 0.15 },
    scales: { x: { time: false } },
    axes: [{ label: 'epoch' }, {}],
    series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length],
                                           width: many ? 1 : 1.5, points: { show: !many }, spanGaps: true }))],
    hooks: {
      setSeries: [(u, i) => {
        if (i == null) { tip.hidden = true; return; }
        tip.textContent = u.series[i].label;
        tip.hidden = false;
      }],
      setCursor: [(u) => {
        const r = u.over.getBoundingClientRect();
        tip.style.left = (r.left + u.cursor.left + 12) + 'px';
        tip.style.top = (r.top + u.cursor.top + 12) + 'px';
      }],
    },
  };
  box.replaceChildren();
  box.addEventListener('mouseleave', () => { tip.hidden = true; });
  return new uPlot(opts, data, box);
}

async function historyTab(body, state) {
  const box = el('div', { id: 'history' });
  body.replaceChildren(el('div', { class: 'panel' }, box));
  let plot = null;
  const draw = () => {
    if (!state.objective) { box.replaceChildren(el('p', { class: 'muted' }, 'No trial has reported the objective yet.')); return; }
    const n = state.table.count, numbers = state.cols[0].values, v = state.objective.values;
    const states = state.cols[1].values;
    const index = [...Array(n).keys()].sort((a, b) => numbers[a] - numbers[b]);
    const max = state.table.experiment.mode === 'max';
    const xs = [], ys = [], best = [];
    let b = NaN;
    for (const i of index) {
      xs.push(numbers[i]);
      const y = states[i] === 'completed' && v[i] === v[i] ? v[i] : null;
      ys.push(y);
      if (y != null && (b !== b || (max ? y > b : y < b))) b = y;
      best.push(b === b ? b : null);
    }
    if (plot) plot.destroy();
    plot = new uPlot({
      title: state.table.experiment.metric + ' of each completed trial, and the best so far',
      width: Math.max(400, box.clientWidth || 800), height: 380,
      scales: { x: { time: false } }, axes: [{ label: 'trial' }, {}],
      series: [{}, { label: 'trial', stroke: '#2563eb88', paths: () => null, points: { show: true, size: 4 } },
               { label: 'best so far', stroke: '#dc2626', width: 2, spanGaps: true }],
    }, [xs, ys, best], box);
  };
  draw();
  return { refresh: draw };
}

// One axis per parameter that varies and the objective; each completed trial a line, coloured by
// its objective (better: warmer). Axes of positive values spanning decades are logarithmic.
async function parallelTab(body, state) {
  const canvas = el('canvas', { id: 'parallel', width: 1200, height: 460 });
  body.replaceChildren(el('div', { class: 'panel' }, canvas,
    el('p', { class: 'muted' }, 'Completed trials; colour by the objective, best in red.')));
  const draw = () => {
    const ctx = canvas.getContext('2d');
    canvas.width = Math.max(600, body.clientWidth - 24);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!state.objective) return;
    const axes = state.cols.filter(c => c.key.startsWith('params.') && varies(c)).concat([state.objective]);
    const rows = [];
    const states = state.cols[1].values, obj = state.objective.values;
    for (let i = 0; i < state.table.count; i++) if (states[i] === 'completed' && obj[i] === obj[i]) rows.push(i);
    const pad = 50, top = 30, h = canvas.height - 60, w = canvas.width - 2 * pad;
    const scale = axes.map(c => {
      if (!c.numeric) {
        const cats = [...new Set(rows.map(i => String(c.values[i])))].sort();
        return { cats, y: (v) => top + h - (cats.length > 1 ? cats.indexOf(String(v)) / (cats.length - 1) : 0.5) * h };
      }
      let lo = Infinity, hi = -Infinity;
      for (const i of rows) { const v = c.values[i]; if (v === v) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
      const log = lo > 0 && hi / lo > 100;
      const f = log ? Math.log : (x) => x;
      const a = f(lo), b = f(hi);
      return { lo, hi, log, y: (v) => top + h - (b > a ? (f(v) - a) / (b - a) : 0.5) * h };
    });
    const x = (k) => pad + (axes.length > 1 ? k * w / (axes.length - 1) : w / 2);
    const s = scale[axes.length - 1];
    const max = state.table.experiment.mode === 'max';
    ctx.lineWidth = 1;
    ctx.globalAlpha = rows.length > 2000 ? 0.08 : rows.length > 200 ? 0.25 : 0.6;
    for (const i of rows) {
      const t = s.hi > s.lo ? (obj[i] - s.lo) / (s.hi - s.lo) : 1;
      const q = max ? t : 1 - t;
      ctx.strokeStyle = 'hsl(' + (240 - 240 * q) + ',80%,45%)';
      ctx.beginPath();
      axes.forEach((c, k) => { const y = scale[k].y(c.values[i]); k ? ctx.lineTo(x(k), y) : ctx.moveTo(x(k), y); });
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ctx.fillStyle = '#1d2430';
    ctx.font = '12px system-ui';
    axes.forEach((c, k) => {
      ctx.strokeStyle = '#555';
      ctx.beginPath(); ctx.moveTo(x(k), top); ctx.lineTo(x(k), top + h); ctx.stroke();
      ctx.textAlign = 'center';
      ctx.fillText(c.label + (scale[k].log ? ' (log)' : ''), x(k), top - 10);
      if (scale[k].cats) scale[k].cats.forEach(cat => ctx.fillText(cat, x(k), scale[k].y(cat) - 3));
      else { ctx.fillText(fmt(scale[k].hi), x(k), top + 12); ctx.fillText(fmt(scale[k].lo), x(k), top + h + 14); }
    });
    window.trellis.parallelLines = rows.length;
  };
  draw();
  return { refresh: draw };
}

async function importanceTab(body, state) {
  const draw = async () => {
    const r = await api('/api/importance', { experiment: state.name });
    const max = Math.max(1e-12, ...r.importances.map(x => x.importance));
    body.replaceChildren(el('div', { class: 'panel', id: 'importance' },
      el('h3', {}, 'Parameter importance (fANOVA, ' + (r.trials_used || 0) + ' completed trials)'),
      r.importances.length ? el('table', { class: 'bars' }, ...r.importances.map(x => el('tr', { 'data-param': x.param },
        el('td', {}, x.param), el('td', { class: 'num' }, (100 * x.importance).toFixed(1) + '%'),
        el('td', { style: 'width:60%' }, el('div', { class: 'bar', style: 'width:' + (100 * x.importance / max) + '%' })))))
        : el('p', { class: 'muted' }, r.note || 'Nothing to rank yet.'),
      el('p', { class: 'muted' }, 'The share of the objective\'s variance over the search space each parameter explains on its own, from a random forest fitted to the completed trials (as Optuna\'s FanovaImportanceEvaluator).')));
  };
  await draw();
  return { refresh: draw };
}

async function schedulerTab(body, state) {
  const link = (n) => el('a', { href: '#/e/' + enc(state.name) + '/t/' + n }, n);
  const list = (ns) => {
    const shown = ns.slice(0, 40).flatMap((n, i) => [i ? ', ' : '', link(n)]);
    return el('span', {}, ...shown, ns.length > 40 ? ' … (' + ns.length + ')' : '');
  };
  const draw = async () => {
    const story = await api('/api/story', { experiment: state.name });
    const parts = [el('h3', {}, 'Rungs: where the scheduler paused, promoted or stopped trials')];
    if (story.rungs.length) {
      parts.push(el('table', { class: 'grid panel', id: 'rungs' },
        el('thead', {}, el('tr', {}, ...['epoch', 'reached', 'paused', 'promoted', 'stopped'].map(h => el('th', {}, h)))),
        el('tbody', {}, ...story.rungs.map(r => el('tr', {}, el('td', { class: 'num' }, r.epoch),
          el('td', { class: 'num' }, r.reached), el('td', {}, list(r.paused)), el('td', {}, list(r.promoted)),
          el('td', {}, list(r.stopped)))))));
    } else parts.push(el('p', { class: 'muted' }, 'No rung decisions: this sweep\'s scheduler did not pause, promote or stop trials.'));
    parts.push(el('h3', {}, 'PBT lineage: whose weights a trial took, when'));
    if (story.exploits.length) {
      parts.push(el('table', { class: 'grid panel', id: 'exploits' },
        el('thead', {}, el('tr', {}, ...['trial', 'at epoch', 'took weights of', 'after its epoch', 'params after'].map(h => el('th', {}, h)))),
        el('tbody', {}, ...story.exploits.map(x => el('tr', {}, el('td', {}, link(x.trial)), el('td', { class: 'num' }, x.epoch),
          el('td', {}, link(x.donor)), el('td', { class: 'num' }, x.donor_epoch),
          el('td', {}, Object.entries(x.params_after).map(([k, v]) => k + '=' + fmt(v)).join(' ')))))));
    } else parts.push(el('p', { class: 'muted' }, 'No exploits (not a PBT sweep, or none yet).'));
    body.replaceChildren(...parts);
  };
  await draw();
  return { refresh: draw };
}

// The rows trial_comparison.h gives `trellis compare`: the same fields in the same order.
function comparisonRows(docs) {
  const rows = new Map();
  const put = (field, k, v) => { if (!rows.has(field)) rows.set(field, new Array(docs.length).fill(undefined)); rows.get(field)[k] = v; };
  const flat = (prefix, obj, k) => {
    for (const key of Object.keys(obj || {}).sort()) {
      const v = obj[key];
      if (v && typeof v === 'object' && !Array.isArray(v)) flat(prefix + key + '.', v, k); else put(prefix + key, k, v);
    }
  };
  docs.forEach((d, k) => {
    const epochs = Math.max(0, ...Object.values(d.metrics).flatMap(ps => ps.map(p => p[0])));
    for (const [f, v] of [['state', d.state], ['error', d.error], ['epochs', epochs], ['attempt', d.attempt],
                          ['seed', d.seed], ['checkpoint_epoch', d.checkpoint_epoch], ['exploits', d.lineage.length]]) put(f, k, v);
  });
  docs.forEach((d, k) => flat('params.', d.params, k));
  docs.forEach((d, k) => flat('final.', d.final, k));
  docs.forEach((d, k) => flat('provenance.', d.provenance, k));
  return [...rows].map(([field, values]) => ({ field, values,
    differs: values.some(v => JSON.stringify(v ?? null) !== JSON.stringify(values[0] ?? null)) }));
}

async function compareTab(body, state) {
  let all = false;
  const draw = async () => {
    const numbers = [...state.selected].slice(0, 50);
    if (numbers.length < 2) {
      body.replaceChildren(el('p', { class: 'muted', id: 'compare-empty' }, 'Select two or more trials on the Trials tab to compare them.'));
      return;
    }
    const docs = await Promise.all(numbers.map(n => api('/api/trial', { experiment: state.name, trial: n })));
    const rows = comparisonRows(docs).filter(r => all || r.differs);
    body.replaceChildren(el('div', { class: 'toolbar' },
      el('label', {}, Object.assign(el('input', { type: 'checkbox', id: 'compare-all', onchange: (ev) => { all = ev.target.checked; draw(); } }), { checked: all }),
         ' show rows that are the same too'),
      el('span', { class: 'muted' }, rows.length + ' row(s)' + (all ? '' : ' that differ'))),
      el('table', { class: 'grid panel', id: 'comparison' },
        el('thead', {}, el('tr', {}, el('th', {}, 'field'), ...numbers.map(n => el('th', {}, el('a', { href: '#/e/' + enc(state.name) + '/t/' + n }, 'trial ' + n))))),
        el('tbody', {}, ...rows.map(r => el('tr', { 'data-field': r.field }, el('td', {}, r.field),
          ...r.values.map(v => el('td', { class: typeof v === 'number' ? 'num' : '' }, v === undefined ? '–' : fmt(v))))))));
  };
  await draw();
  return { refresh: draw };
}

// ---- one trial ---------------------------------------------------------------------------
async function trialView(view, name, number) {
  window.trellis.view = 'trial';
  crumbs(el('a', { href: '#/e/' + enc(name) }, name), 'trial ' + number);
  const plots = [];
  const draw = async () => {
    const t = await api('/api/trial', { experiment: name, trial: number });
    const kv = (obj) => el('table', { class: 'kv' }, ...Object.entries(obj).map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, fmt(v)))));
    const why = t.state === 'completed' ? 'trained through its last epoch'
      : (t.error ? t.error : t.state);
    const charts = el('div', { class: 'charts', id: 'trial-charts' });
    const model = t.model ? (t.model.file ? t.model.file + ' (rank ' + t.model.rank + ' of the ' + t.model.keep + ' kept)'
                                          : 'ranks ' + t.model.rank + ' of the kept, but its model did not arrive')
                          : 'not kept (only the best keep_models completed trials\' models are)';
    view.replaceChildren(
      el('h2', {}, 'Trial ' + t.id + ' of ' + name + ' — ', el('span', { class: 'state-' + t.state }, t.state)),
      el('p', {}, el('b', {}, 'Why it ended: '), why),
      el('div', { class: 'split' },
        el('div', {}, el('h3', {}, 'Parameters'), kv(t.params), el('h3', {}, 'Final metrics'), kv(t.final),
           el('h3', {}, 'Run'), kv({ attempt: t.attempt, seed: t.seed, group: t.group, started: t.started_at,
                                     finished: t.finished_at, checkpoint_epoch: t.checkpoint_epoch, model })),
        el('div', {}, el('h3', {}, 'Provenance'), el('pre', {}, JSON.stringify(t.provenance, null, 2)))),
      el('h3', {}, 'Every metric'), charts,
      t.lineage.length ? el('div', {}, el('h3', {}, 'Lineage (PBT)'), ...t.lineage.map(l => el('p', {},
        'at epoch ' + l.epoch + ' took the weights of ', el('a', { href: '#/e/' + enc(name) + '/t/' + l.donor }, 'trial ' + l.donor),
        ' after its epoch ' + l.donor_epoch + ' (' + l.reason + ')'))) : null);
    plots.splice(0).forEach(p => p.destroy());
    for (const [metric, points] of Object.entries(t.metrics)) {
      const box = el('div', { class: 'panel' });
      charts.append(box);
      plots.push(drawLines(box, null, [{ label: metric, points: [points.map(p => p[0]), points.map(p => p[1])] }],
                           { title: metric, width: 360, height: 220 }));
    }
    window.trellis.curvesDrawn = plots.length;
  };
  await draw();
  return { refresh: draw };
}

// ---- live --------------------------------------------------------------------------------
async function poll() {
  try {
    const { version } = await api('/api/changes');
    const live = $('#live');
    live.className = 'on';
    live.textContent = 'live · ' + new Date().toLocaleTimeString();
    if (window.trellis.version !== null && version !== window.trellis.version && current) {
      await current.refresh();
      window.trellis.refreshes = (window.trellis.refreshes || 0) + 1;
    }
    window.trellis.version = version;
  } catch (e) {
    $('#live').className = '';
    $('#live').textContent = 'server unreachable: ' + (e.message || e);
  }
  setTimeout(poll, POLL_MS);
}

window.addEventListener('hashchange', route);
route().then(() => {
  if (STATIC) $('#live').textContent = 'report written ' + STATIC.written_at;
  else poll();
});
