// diskscope page: UI only. Every byte of the dropped files is read in the worker
// (web/worker.js), which hosts the wasm core; this thread draws what it answers.

import { WorkerClient } from './client.js';
import * as mapview from './mapview.js';
import * as demo from './demo.js';
import * as chain from './chain.js';
import { bytes, hex, human } from './format.js';
import { $, el } from './dom.js';
import * as views from './views.js';
import * as findings from './findings.js';
import * as hexview from './hexview.js';
import * as layout from './layout.js';
import * as reports from './reports.js';
import * as exporter from './export.js';

// ---------------------------------------------------------------------------------------
// State

const state = {
  files: [], // File[] given so far (unique by name)
  opened: null, // the worker's answer to 'open'
  cells: null, // the map picture
  layout: null, // how the picture is laid out on the canvas
  openSeq: 0, // the latest open; answers to older ones are dropped
  reopened: false,
  view: { asStored: false, snapshot: null }, // which view of the top image is open
  mapMode: 'allocation', // or 'versions' (GOW3)
};

const client = new WorkerClient({
  onFatal(error) {
    showError(error, 'diskscope had to restart');
    // Reopen once (the worker's session went with it); not again if that crashes too.
    if (state.files.length && state.opened && !state.reopened) {
      state.reopened = true;
      openFiles([], { mode: 'reopen' });
    } else {
      closeView();
    }
  },
});

// ---------------------------------------------------------------------------------------
// Alerts and busy state

const ERROR_TITLES = {
  'no-image': 'Not a disk image',
  'unknown-format': 'Not a disk image',
  'missing-file': 'A file is missing',
  invalid: 'The image is damaged',
  unsupported: 'Not supported',
  io: 'Could not read the file',
  'past-end': 'The image is truncated',
  limit: 'Too large to inspect',
  panic: 'Internal error',
  init: 'Could not start',
};

function showError(error, title) {
  const err = error && typeof error === 'object' ? error : { kind: 'error', message: String(error) };
  $('alert-title').textContent = title || ERROR_TITLES[err.kind] || 'Something went wrong';
  $('alert-message').textContent = capital(err.message);
  const hint = [];
  if (err.doing) hint.push(`While ${err.doing}.`);
  if (err.offset !== undefined && err.offset !== null) hint.push(`At byte ${fmtOffset(err.offset)}.`);
  if (!state.opened) hint.push('Drop another file, or choose files, to try again.');
  $('alert-hint').textContent = hint.join(' ');
  $('alert').dataset.kind = err.kind;
  $('alert').hidden = false;
}

function hideError() {
  $('alert').hidden = true;
}

function busy(text) {
  $('busy').hidden = !text;
  if (text) $('busy-text').textContent = text;
}

const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const fmtOffset = (v) => (typeof v === 'number' ? `${v.toLocaleString('en-US')} (${hex(v)})` : String(v));

// ---------------------------------------------------------------------------------------
// Opening files

/**
 * mode 'replace': a new inspection of `added`.
 * mode 'add': `added` joins the files given so far (the chain named a missing file).
 * mode 'reopen': the same files again (after a worker restart, or to switch image).
 */
async function openFiles(added, { mode = 'replace', top, view, demo: sample } = {}) {
  added = Array.from(added || []);
  if (mode !== 'reopen' && !added.length) return;
  // A new image (or another of the dropped ones) opens in its default view.
  const previousView = state.view;
  if (mode === 'replace' || (top && (!state.opened || top !== state.opened.top))) state.view = { asStored: false, snapshot: null };
  if (view) state.view = { ...state.view, ...view };
  const seq = ++state.openSeq;
  if (mode !== 'reopen') state.reopened = false;
  if (mode !== 'reopen' || top) hideError(); // a restart's reopen keeps its message up
  exporter.cancel();
  const previous = state.opened;
  const previousFiles = state.files;
  if (mode === 'replace') {
    state.files = unique(added);
    state.demo = sample || null;
    if (!sample) demo.leave();
  } else if (mode === 'add') {
    const names = new Set(added.map((f) => f.name));
    state.files = unique([...state.files.filter((f) => !names.has(f.name)), ...added]);
  }
  let prefer = added.map((f) => f.name);
  if (mode === 'add' && previous) prefer = [previous.top];
  if (mode === 'reopen' && previous) top = top || previous.top;
  busy(`Reading ${state.files.length === 1 ? state.files[0].name : `${state.files.length} files`}…`);
  try {
    const opened = await client.call({ type: 'open', files: state.files, prefer, top, asStored: state.view.asStored, snapshot: state.view.snapshot });
    if (seq !== state.openSeq) return;
    state.opened = opened;
    renderOpened(opened);
    busy('Mapping…');
    try {
      renderGrids(layersOf(opened.report)[0]);
      state.cells = await client.call({ type: 'cells', max: MAX_CELLS, unit: state.gridUnit });
    } catch (err) {
      // The header and check stay on the page (an encrypted image has no readable map).
      if (seq !== state.openSeq || (err && err.kind === 'superseded')) return;
      state.cells = null;
      mapUnavailable(err);
    }
    if (seq !== state.openSeq) return;
    if (state.cells) {
      renderMap();
      $('view').dataset.mapMs = state.cells.ms.toFixed(1);
    }
    $('view').dataset.openMs = opened.openMs.toFixed(1);
    $('view').dataset.ready = 'true';
    views.loadVersions(seq);
    views.loadHostMap(seq);
    layout.loadHostData(seq);
    hexview.fill(seq);
    exporter.loadSummary(seq);
  } catch (err) {
    if (seq !== state.openSeq || (err && err.kind === 'superseded')) return;
    state.view = previousView;
    if ((mode === 'add' || mode === 'reopen') && previous && state.opened) {
      if (mode === 'add') state.files = previousFiles; // the open session stays
      showError(err);
      // The worker's session is still the previous one: put its view back on the page.
      if (mode === 'reopen') openFiles([], { mode: 'reopen', top: previous.top, view: previousView });
      return;
    }
    if (mode === 'add' && previous) state.files = previousFiles; // the open session stays
    else closeView();
    showError(err);
  } finally {
    if (seq === state.openSeq) busy(null);
  }
}

const MAX_CELLS = mapview.MAX_CELLS;

function unique(files) {
  const seen = new Map();
  for (const f of files) seen.set(f.name, f);
  return [...seen.values()];
}

function mapUnavailable(err) {
  mapview.unavailable(err);
}

function renderMap() {
  mapview.available();
  mapview.reset();
}

function closeView() {
  exporter.cancel();
  state.opened = null;
  state.cells = null;
  $('view').hidden = true;
  $('view').dataset.ready = 'false';
  $('empty').hidden = false;
  $('close-btn').hidden = true;
  exporter.revoke();
}

// ---------------------------------------------------------------------------------------
// The report

function layersOf(report) {
  // The core puts the top image's fields at the top level (as qemu-img info does) and
  // the rest under backing-chain; older cores listed all under `layers`.
  if (Array.isArray(report.layers)) return report.layers;
  const { 'backing-chain': chain = [], 'chain-break': _b, 'full-backing-filename': _f, ...top } = report;
  return [top, ...chain];
}

/** Every file the image needs and was not given: a missing backing file, and companion
 * files (a raw-cow's raw file, an add-cow's image file, VMDK extents) the header names. */
function missingFiles(o) {
  const out = [];
  const brk = o.chainBreak;
  if (brk && brk.kind === 'missing') out.push({ role: 'backing file', name: brk.name, by: brk.by, offset: brk.offset });
  for (const l of layersOf(o.report)) {
    for (const c of l.companions || []) {
      if (!c.found) out.push({ role: c.role, name: c.name, by: l.filename, offset: c.offset });
    }
  }
  return out;
}

/** The granularities the format offers to draw the map at (FVD blocks and chunks, cow bits). */
function renderGrids(top) {
  const grids = top.grids || [];
  const keep = grids.some((g) => g.size === state.gridUnit);
  if (!keep) state.gridUnit = 0;
  $('map-grid-label').hidden = !grids.length;
  $('map-grid').replaceChildren(
    el('option', { value: '0' }, `cluster (${human(top['cluster-size'])})`),
    ...grids.map((g) => el('option', { value: String(g.size) }, `${g.name} (${human(g.size)})`)),
  );
  $('map-grid').value = String(state.gridUnit || 0);
}

async function redrawAtGrid() {
  state.gridUnit = Number($('map-grid').value) || 0;
  busy('Mapping…');
  try {
    state.cells = await client.call({ type: 'cells', max: MAX_CELLS, unit: state.gridUnit });
    renderMap();
  } catch (err) {
    if (!(err && err.kind === 'superseded')) showError(err, 'Could not draw the map');
  } finally {
    busy(null);
  }
}

function renderOpened(o) {
  const layers = layersOf(o.report);
  const top = layers[0];
  $('empty').hidden = true;
  $('view').hidden = false;
  $('close-btn').hidden = false;
  $('view').dataset.ready = 'false';

  $('image-name').textContent = top.filename;
  demo.banner(state.demo);
  const variant = top.variant && top.variant.toLowerCase() !== top.format.toLowerCase() ? ` · ${top.variant}` : '';
  $('format-badge').textContent = `${top.format.toUpperCase()}${variant}`;
  $('format-badge').className = 'badge format';
  const confirmed = top.layout === 'confirmed';
  $('layout-badge').textContent = confirmed ? 'layout confirmed' : 'layout reconstructed';
  $('layout-badge').className = `badge ${confirmed ? 'ok' : 'warn'}`;
  $('layout-badge').title = confirmed
    ? 'The field layout comes from the format’s published source code.'
    : 'The field layout was reconstructed from documentation; it may be wrong in places.';
  $('dirty-badge').textContent = top['dirty-flag'] ? 'dirty: not closed cleanly' : 'clean';
  $('dirty-badge').className = `badge ${top['dirty-flag'] ? 'warn' : 'ok'}`;

  const facts = [
    ['Virtual size', bytes(top['virtual-size'])],
    ['Cluster size', bytes(top['cluster-size'])],
    ['File size', bytes(top['file-size'])],
    ['Backing file', top['backing-filename'] ? `${top['backing-filename']}${top['backing-filename-format'] ? ` (${top['backing-filename-format']})` : ''}` : 'none'],
    ['Dirty flag', top['dirty-flag'] ? 'set: the image was not closed cleanly' : 'not set'],
  ];
  $('facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { dataset: { fact: k } }, v)]));

  renderSwitch(o);
  renderChain(o, layers);
  renderChecks(o);
  renderHeaders(layers);
  views.renderWarnings(o);
  views.renderRecords(o);
  views.renderSnapshots(o);
  exporter.reset();
  hexview.reset(o);
  layout.reset(o);
  reports.reset();
}

function renderSwitch(o) {
  const others = o.candidates.filter((n) => n !== o.top);
  const box = $('switch');
  box.hidden = !others.length;
  if (!others.length) return;
  box.replaceChildren(
    el('span', {}, 'Also dropped: '),
    ...others.map((name) =>
      el('button', { type: 'button', class: 'btn small', onclick: () => openFiles([], { mode: 'reopen', top: name }) }, `Inspect ${name}`),
    ),
  );
}

function renderChain(o, layers) {
  chain.render(o, layers);
}


function renderChecks(o) {
  const rows = [];
  const lines = [];
  for (const c of o.checks) {
    if (c.error) {
      lines.push(`${c.layer}: the check stopped: ${c.error.message}.`);
      rows.push({ severity: 'corruption', file: c.layer, offset: c.error.offset, message: `The check could not finish: ${c.error.message}` });
      continue;
    }
    const r = c.result;
    for (const f of r.findings) rows.push(f);
    const layer = layersOf(o.report).find((l) => l.filename === c.layer);
    if (layer && !(layer['header-fields'] || []).length && !r['total-clusters'] && !r.findings.length) {
      lines.push(`${c.layer}: ${layer.format} file, no metadata to check.`);
      continue;
    }
    const problems = [];
    if (r.corruptions) problems.push(`${r.corruptions} corruption${r.corruptions === 1 ? '' : 's'}`);
    if (r.leaks) problems.push(`${r.leaks} leaked cluster${r.leaks === 1 ? '' : 's'}`);
    if (r['check-errors']) problems.push(`${r['check-errors']} check error${r['check-errors'] === 1 ? '' : 's'}`);
    const clusters = r['total-clusters']
      ? ` ${r['allocated-clusters'].toLocaleString('en-US')} of ${r['total-clusters'].toLocaleString('en-US')} clusters allocated${r['fragmented-clusters'] ? `, ${r['fragmented-clusters'].toLocaleString('en-US')} fragmented` : ''}.`
      : '';
    lines.push(`${c.layer}: ${problems.length ? problems.join(', ') : 'no errors found'}.${clusters}`);
    if (r['findings-dropped']) lines.push(`${r['findings-dropped']} more findings are not listed.`);
  }
  if (o.chainBreakFinding) rows.unshift(o.chainBreakFinding);
  $('check-summary').replaceChildren(...lines.map((l) => el('span', { class: 'check-line' }, l)));
  $('findings').tBodies[0].replaceChildren(...findings.rows(rows, o.clusterSize));
  $('findings').hidden = !rows.length;
}

function renderHeaders(layers) {
  const blocks = layers.map((l, i) => {
    const fields = l['header-fields'] || [];
    const body = fields.length
      ? el('table', { class: 'table header-table' },
          el('thead', {}, el('tr', {}, el('th', { class: 'num' }, 'Offset'), el('th', { class: 'num' }, 'Size'), el('th', {}, 'Field'), el('th', {}, 'Bytes'), el('th', {}, 'Value'), el('th', {}, 'Meaning'))),
          el('tbody', {}, ...fields.map((f) =>
            el('tr', { dataset: { field: f.name } },
              el('td', { class: 'num mono' }, f.offset),
              el('td', { class: 'num' }, f.size),
              el('td', { class: 'mono field' }, el('button', {
                type: 'button',
                class: 'link',
                title: 'Show these bytes',
                onclick: () => document.dispatchEvent(new CustomEvent(hexview.SHOW_BYTES, { detail: { file: l.filename, offset: f.offset, length: f.size, label: `field ${f.name} = ${f.value}` } })),
              }, f.name)),
              el('td', { class: 'mono bytes', title: f.raw }, hexBytes(f.raw)),
              el('td', { class: 'value' }, f.value),
              el('td', { class: 'muted' }, f.note),
            ))),
        )
      : el('p', { class: 'muted' }, `${l.format} has no header: byte N of the file is byte N of the disk.`);
    if (i === 0) return el('div', { class: 'header-block' }, body);
    return el('details', { class: 'header-block' }, el('summary', {}, `${l.filename} (${l.format}, backing file ${i})`), body);
  });
  $('headers').replaceChildren(...blocks);
}

function hexBytes(raw) {
  const pairs = raw.match(/../g) || [];
  const shown = pairs.slice(0, 16).join(' ');
  return pairs.length > 16 ? `${shown} … (${pairs.length} bytes)` : shown;
}

// ---------------------------------------------------------------------------------------
// The map: web/mapview.js

// ---------------------------------------------------------------------------------------
// Wiring

function setupDrop() {
  const overlay = $('drop-overlay');
  let depth = 0;
  const hasFiles = (ev) => ev.dataTransfer && Array.from(ev.dataTransfer.types || []).includes('Files');
  window.addEventListener('dragenter', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth++;
    const missing = state.opened && missingFiles(state.opened).length;
    $('drop-overlay-text').textContent = missing ? 'Drop to add to this image' : 'Drop to open';
    overlay.hidden = false;
  });
  window.addEventListener('dragover', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = 'copy';
  });
  window.addEventListener('dragleave', (ev) => {
    if (!hasFiles(ev)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  window.addEventListener('drop', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth = 0;
    overlay.hidden = true;
    dropped(Array.from(ev.dataTransfer.files || []));
  });
}

/** Files arrived by drop or the main picker: add to a chain that misses one, else start over. */
function dropped(files) {
  if (!files.length) return;
  const missing = state.opened && missingFiles(state.opened).length;
  openFiles(files, { mode: missing ? 'add' : 'replace' });
}

function setupGrids() {
  $('map-grid').addEventListener('change', redrawAtGrid);
}

function setup() {
  setupGrids();
  $('open-btn').addEventListener('click', () => $('file-input').click());
  $('pick-btn').addEventListener('click', (ev) => {
    ev.stopPropagation();
    $('file-input').click();
  });
  $('dropzone').addEventListener('click', () => $('file-input').click());
  $('dropzone').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      $('file-input').click();
    }
  });
  $('file-input').addEventListener('change', (ev) => {
    dropped(Array.from(ev.target.files));
    ev.target.value = '';
  });
  $('add-input').addEventListener('change', (ev) => {
    openFiles(Array.from(ev.target.files), { mode: 'add' });
    ev.target.value = '';
  });
  $('close-btn').addEventListener('click', () => {
    hideError();
    state.files = [];
    demo.leave();
    closeView();
  });
  $('alert-close').addEventListener('click', hideError);
  exporter.init({ state, client, showError, refusal: views.exportRefusal });
  mapview.init({ state, client, showError, busy });
  demo.init({ client, showError, busy, open: (files, d) => openFiles(files, { mode: 'replace', demo: d }) });
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if ($('view').hidden) return;
      if (state.cells) mapview.render();
      views.renderHostMap();
      views.renderDelta();
      layout.redraw();
    }, 150);
  });
  setupDrop();
  hexview.init({ state, client, describe: layout.describe });
  layout.init({ state, client });
  reports.init({ state, client, showError });
  views.init({ state, client, showError, renderMap: () => state.cells && mapview.render(), reopen: (view) => openFiles([], { mode: 'reopen', view }) });
  client.start().catch((err) => showError(err, 'Could not start'));
  // Tests make the worker fail this way (worker.js 'fail'); the page recovers as from a bug.
  window.addEventListener('diskscope:test-worker-failure', (ev) => {
    client.call({ type: 'fail', how: ev.detail }).catch(() => {});
  });
}

setup();
