// The allocation map's behaviour: zoom and pan (wheel, drag, buttons, keys), a keyboard
// cursor, hover and pinned details, the legend, the whole-disk overview strip, one layer
// alone or the merged chain, and highlights asked for by other panels.
//
// The whole-disk picture (state.cells) stays as it is for the legend, the overview and the
// other views that index it (GOW versions). Zoomed in, the worker maps only the guest
// window on show, at a finer cell size (state.win); the window's start is always a whole
// number of its cells, so cell i covers win.start + i * win.cellSize.
//
// Listens for   'diskscope:show-guest' {start (or offset), length, label}: point at those cells.
// Dispatches    'diskscope:show-bytes' {file, offset, length, label} from the details box.

import { drawMap, layoutMap, cellAt } from './map.js';
import { hex, human, pct } from './format.js';
import { $, el } from './dom.js';
import * as views from './views.js';

let ctx = null; // { state, client, showError, busy }

/** Cells asked of the core: beyond this it groups clusters into one cell (1 MiB per cell
 * for a 256 GiB disk of 64 KiB clusters), which still fills the canvas. */
export const MAX_CELLS = 1 << 18;
/** The deepest zoom shows this many cells of one cluster (or grid unit) each. */
const MIN_WINDOW_UNITS = 32;

const view = {
  zoom: 0, // window = the disk's units rounded up to a power of two, halved `zoom` times
  start: 0, // guest byte where the window starts
  cursor: 0, // keyboard cursor: cell index in the window
  hover: -1,
  pinned: null, // { start, length } of the cell whose details are shown
  marks: null, // { start, length, label } highlighted on request
  layer: null, // null: the merged chain; k: layer k alone
  seq: 0, // the latest window request
};

const fmtOffset = (v) => (typeof v === 'number' ? `${v.toLocaleString('en-US')} (${hex(v)})` : String(v));

export function init(c) {
  ctx = c;
  const map = $('map');
  map.addEventListener('mousemove', onMove);
  map.addEventListener('mouseleave', () => {
    view.hover = -1;
    $('cursor').hidden = true;
  });
  map.addEventListener('wheel', onWheel, { passive: false });
  map.addEventListener('mousedown', onDown);
  map.addEventListener('keydown', onKey);
  map.addEventListener('focus', () => showCursor(true));
  map.addEventListener('blur', () => ($('map-focus').hidden = true));
  $('map-details-close').addEventListener('click', unpin);
  $('map-details').addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') unpin();
  });
  $('map-zoom-in').addEventListener('click', () => zoomAt(anchor(), 1));
  $('map-zoom-out').addEventListener('click', () => zoomAt(anchor(), -1));
  $('map-zoom-reset').addEventListener('click', () => setWindow(0, 0));
  $('map-layer').addEventListener('change', () => {
    const v = $('map-layer').value;
    view.layer = v === 'merged' ? null : Number(v);
    reload();
  });
  $('map-overview').addEventListener('click', (ev) => {
    const full = ctx.state.cells;
    if (!full || !view.zoom) return;
    const rect = $('map-overview').getBoundingClientRect();
    const at = Math.floor(((ev.clientX - rect.left) / rect.width) * full.virtualSize);
    setWindow(view.zoom, at - windowBytes() / 2);
  });
  document.addEventListener('diskscope:show-guest', (ev) => showGuest(ev.detail || {}));
}

// ---------------------------------------------------------------------------------------
// Classes and colours

const CLASS_INFO = (ids, layers) => {
  const list = [
    { id: ids.data, key: 'data', label: `Data in ${layers[0]}`, color: '#2563eb' },
    { id: ids.zero, key: 'zero', label: 'Zero clusters', color: '#a5b4c8' },
    { id: ids.unallocated, key: 'unallocated', label: 'Unallocated (reads as zeros)', color: '#e9edf2' },
    { id: ids.compressed, key: 'compressed', label: 'Compressed', color: '#9333ea' },
    { id: ids.invalid, key: 'invalid', label: 'Invalid mapping', color: '#dc2626' },
    { id: ids.missing, key: 'missing', label: 'Needs a missing file', color: '#f59e0b' },
  ];
  const depthColors = ['#0d9488', '#65a30d', '#c2410c', '#7c3aed', '#0891b2', '#be185d'];
  for (let d = 1; d < layers.length; d++) {
    list.push({ id: ids.backing + d - 1, key: `backing-${d}`, label: `Data in ${layers[d]} (backing ${d})`, color: depthColors[(d - 1) % depthColors.length] });
  }
  return list;
};

function classInfo(c = ctx.state.cells) {
  return CLASS_INFO(c.classIds, c.layers);
}

// ---------------------------------------------------------------------------------------
// The window

function unit() {
  return ctx.state.gridUnit || ctx.state.opened.clusterSize || 65536;
}

function units() {
  return Math.max(1, Math.ceil(ctx.state.cells.virtualSize / unit()));
}

const pow2 = (n) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Guest bytes the window spans at the current zoom. */
function windowBytes(zoom = view.zoom) {
  return Math.max(MIN_WINDOW_UNITS, pow2(units()) / 2 ** zoom) * unit();
}

function maxZoom() {
  return Math.max(0, Math.round(Math.log2(pow2(units()) / MIN_WINDOW_UNITS)));
}

/** The window's cell size, as the core will choose it. */
function windowCell(zoom) {
  let cell = unit();
  while (Math.ceil(windowBytes(zoom) / cell) > MAX_CELLS) cell *= 2;
  return cell;
}

function win() {
  return ctx.state.win || ctx.state.cells;
}

/** The guest byte zooming keeps in place: the keyboard cursor's cell, else the middle. */
function anchor() {
  const w = win();
  if (!w) return 0;
  if (document.activeElement === $('map') || view.cursor > 0) return w.start + view.cursor * w.cellSize;
  return w.start + (w.cellCount * w.cellSize) / 2;
}

function zoomAt(guest, dir) {
  const z = Math.min(maxZoom(), Math.max(0, view.zoom + dir));
  if (z === view.zoom) return;
  const w = win();
  // Keep `guest` where it is on the screen: same fraction of the window before and after.
  const frac = w ? (guest - w.start) / Math.max(1, w.cellCount * w.cellSize) : 0.5;
  setWindow(z, guest - frac * windowBytes(z), guest);
}

/** Show the window of zoom `z` starting near guest byte `start`; keep `focusGuest` under the cursor. */
async function setWindow(z, start, focusGuest) {
  const full = ctx.state.cells;
  if (!full) return;
  view.zoom = z;
  const size = full.virtualSize;
  const len = windowBytes(z);
  const cell = windowCell(z);
  if (z === 0 || len >= size) {
    view.zoom = len >= size ? 0 : z;
    start = 0;
  }
  start = Math.max(0, Math.min(start, Math.ceil(size / cell) * cell - len));
  start = Math.max(0, Math.floor(start / cell) * cell);
  view.start = start;
  const seq = ++view.seq;
  if (view.zoom === 0 && view.layer === null) {
    ctx.state.win = null;
    place(focusGuest);
    render();
    return;
  }
  const slow = setTimeout(() => ctx.busy('Mapping…'), 500);
  try {
    const w = await ctx.client.call({ type: 'cells', max: MAX_CELLS, unit: ctx.state.gridUnit, start, length: view.zoom ? len : size, layer: view.layer ?? undefined });
    if (seq !== view.seq) return;
    ctx.state.win = w;
    place(focusGuest);
    render();
  } catch (err) {
    if (seq === view.seq && !(err && err.kind === 'superseded')) ctx.showError(err, 'Could not draw the map');
  } finally {
    clearTimeout(slow);
    if (seq === view.seq) ctx.busy(null);
  }
}

function place(guest) {
  const w = win();
  if (guest === undefined || !w) {
    view.cursor = Math.min(view.cursor, (w ? w.cellCount : 1) - 1);
    return;
  }
  view.cursor = Math.max(0, Math.min(w.cellCount - 1, Math.floor((guest - w.start) / w.cellSize)));
}

/** Redraw after a new open, a new grid or a new layer: the whole disk, cursor at the start. */
export function reset() {
  view.zoom = 0;
  view.start = 0;
  view.cursor = 0;
  view.pinned = null;
  view.marks = null;
  view.layer = null;
  ctx.state.win = null;
  $('map-details').hidden = true;
  renderLayers();
  $('map-wrap').style.minHeight = '';
  render();
}

function reload() {
  view.pinned = null;
  $('map-details').hidden = true;
  setWindow(view.zoom, view.start);
}

function renderLayers() {
  const layers = ctx.state.cells ? ctx.state.cells.layers : [];
  const box = $('map-layer-label');
  box.hidden = layers.length < 2;
  $('map-layer').replaceChildren(
    el('option', { value: 'merged' }, 'All layers merged'),
    ...layers.map((name, i) => el('option', { value: String(i) }, `${name} alone${i === 0 ? ' (the image)' : ` (backing ${i})`}`)),
  );
  $('map-layer').value = 'merged';
}

// ---------------------------------------------------------------------------------------
// Drawing

export function render() {
  const full = ctx.state.cells;
  if (!full) return;
  const w = win();
  const wrap = $('map-wrap');
  const layout = layoutMap(w.cellCount, wrap.clientWidth || 800);
  ctx.state.layout = layout;
  const info = classInfo(w);
  const palette = new Map(info.map((k) => [k.id, k.color]));
  wrap.hidden = false;
  $('map-unavailable').hidden = true;
  const merged = view.layer === null;
  // GOW versions are per whole-disk cell: a zoomed window's cell takes the one it falls in.
  const pick = view.zoom ? (i) => Math.floor((w.start + i * w.cellSize) / full.cellSize) : undefined;
  const versions = merged && views.drawVersionsMap($('map'), layout, pick, w.cellCount);
  if (!versions) drawMap($('map'), w.classes, layout, (id) => palette.get(id) || '#000000');
  // Zooming must not move what is below the map: the area keeps the tallest height it had.
  wrap.style.minHeight = `${Math.max(parseFloat(wrap.style.minHeight) || 0, layout.height)}px`;
  // The geometry, for tests and tools that point at a given guest offset.
  Object.assign($('map').dataset, { cols: layout.cols, cellPx: layout.size, cellBytes: w.cellSize, start: w.start || 0, zoom: view.zoom, cells: w.cellCount });
  const rowBytes = layout.cols * w.cellSize;
  const clusters = w.cellSize > ctx.state.opened.clusterSize ? ` (${w.cellSize / ctx.state.opened.clusterSize} clusters)` : '';
  $('map-scale').textContent = `1 cell = ${human(w.cellSize)}${clusters} · 1 row = ${human(rowBytes)} · ${w.cellCount.toLocaleString('en-US')} cells`;
  renderWindowText(w);
  renderLegend(full, info);
  renderOverview(full);
  drawMarks();
  showCursor(document.activeElement === $('map'));
  $('cursor').hidden = true;
  view.hover = -1; // the cells moved: the next pointer move describes afresh
  if (view.pinned) positionDetails();
  $('map-zoom-in').disabled = view.zoom >= maxZoom();
  $('map-zoom-out').disabled = view.zoom === 0;
  $('map-zoom-reset').disabled = view.zoom === 0;
}

function renderWindowText(w) {
  const size = ctx.state.cells.virtualSize;
  const end = Math.min(size, w.start + w.cellCount * w.cellSize);
  const layer = view.layer === null ? '' : ` · ${ctx.state.cells.layers[view.layer]} alone`;
  $('map-window').textContent = view.zoom
    ? `Showing guest ${hex(w.start)}–${hex(end - 1)} (${human(end - w.start)}, ${pct(end - w.start, size)} of the disk)${layer}`
    : `Showing the whole disk (${human(size)})${layer}`;
}

function renderLegend(full, info) {
  // Totals are the whole disk's (for one layer alone, that layer's once it is drawn whole).
  const src = view.layer !== null && view.zoom === 0 && ctx.state.win ? ctx.state.win : full;
  const total = src.virtualSize;
  const rows = info.filter((k) => src.totals[k.id] > 0 || ['data', 'zero', 'unallocated'].includes(k.key));
  $('legend').replaceChildren(
    ...rows.map((k) =>
      el('li', { dataset: { class: k.key, bytes: String(src.totals[k.id] || 0) } },
        el('span', { class: 'swatch', style: `background:${k.color}` }),
        el('span', { class: 'legend-label' }, k.label),
        el('span', { class: 'legend-bytes' }, human(src.totals[k.id] || 0)),
        el('span', { class: 'legend-pct' }, pct(src.totals[k.id] || 0, total)),
      ),
    ),
  );
}

/** One row of the whole disk, the window framed on it. */
function renderOverview(full) {
  const canvas = $('map-overview');
  const width = Math.max(64, Math.floor($('map-wrap').clientWidth || 800));
  const height = 12;
  canvas.width = width;
  canvas.height = height;
  canvas.style.width = `${width}px`;
  const g = canvas.getContext('2d');
  const palette = new Map(classInfo(full).map((k) => [k.id, k.color]));
  for (let x = 0; x < width; x++) {
    // The worst class in the cells under this pixel shows (invalid and missing first).
    const a = Math.floor((x * full.cellCount) / width);
    const b = Math.max(a + 1, Math.floor(((x + 1) * full.cellCount) / width));
    let c = full.classes[a];
    for (let i = a; i < b && i < full.cellCount; i++) {
      const k = full.classes[i];
      if (k === full.classIds.invalid || k === full.classIds.missing) c = k;
      else if (c === full.classIds.unallocated) c = k;
    }
    g.fillStyle = palette.get(c) || '#000';
    g.fillRect(x, 0, 1, height);
  }
  if (view.zoom) {
    const w = win();
    const x0 = (w.start / full.virtualSize) * width;
    const x1 = Math.min(width, ((w.start + w.cellCount * w.cellSize) / full.virtualSize) * width);
    g.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue('--ink') || '#000';
    g.lineWidth = 2;
    g.strokeRect(Math.max(1, x0), 1, Math.max(3, x1 - x0 - 1), height - 2);
  }
  canvas.setAttribute('aria-label', view.zoom ? `Whole disk; the map shows ${pct(win().cellCount * win().cellSize, full.virtualSize)} of it` : 'Whole disk');
}

function cellBox(i) {
  const { cols, size } = ctx.state.layout;
  return { x: (i % cols) * size, y: Math.floor(i / cols) * size, size: Math.max(size, 3) };
}

function put(node, i) {
  const b = cellBox(i);
  node.style.left = `${b.x}px`;
  node.style.top = `${b.y}px`;
  node.style.width = node.style.height = `${b.size}px`;
}

function showCursor(on) {
  const w = win();
  if (!on || !w) {
    $('map-focus').hidden = true;
    return;
  }
  view.cursor = Math.max(0, Math.min(w.cellCount - 1, view.cursor));
  put($('map-focus'), view.cursor);
  $('map-focus').hidden = false;
}

/** The cells of the highlighted guest range, drawn on the overlay canvas. */
function drawMarks() {
  const canvas = $('map-marks');
  const layout = ctx.state.layout;
  canvas.width = layout.width;
  canvas.height = layout.height;
  canvas.style.width = `${layout.width}px`;
  canvas.style.height = `${layout.height}px`;
  const m = view.marks;
  if (!m) return;
  const w = win();
  const first = Math.max(0, Math.floor((m.start - w.start) / w.cellSize));
  const last = Math.min(w.cellCount - 1, Math.floor((m.start + Math.max(1, m.length) - 1 - w.start) / w.cellSize));
  const g = canvas.getContext('2d');
  g.fillStyle = 'rgba(250, 204, 21, 0.55)';
  g.strokeStyle = '#a16207';
  for (let i = first; i <= last; i++) {
    const b = cellBox(i);
    g.fillRect(b.x, b.y, layout.size, layout.size);
  }
  if (first <= last) {
    const b = cellBox(first);
    g.lineWidth = 2;
    g.strokeRect(b.x + 1, b.y + 1, layout.size - 2 || 1, layout.size - 2 || 1);
  }
}

// ---------------------------------------------------------------------------------------
// Pointer and keys

function cellUnder(ev) {
  const w = win();
  if (!w || !ctx.state.layout) return -1;
  const rect = $('map').getBoundingClientRect();
  return cellAt(ctx.state.layout, ev.clientX - rect.left, ev.clientY - rect.top, w.cellCount);
}

function cellRange(i) {
  const w = win();
  const start = w.start + i * w.cellSize;
  return { start, length: Math.max(0, Math.min(w.cellSize, ctx.state.cells.virtualSize - start)) };
}

function onMove(ev) {
  if (drag) return;
  const idx = cellUnder(ev);
  if (idx === view.hover) return;
  view.hover = idx;
  if (idx < 0) {
    $('cursor').hidden = true;
    return;
  }
  put($('cursor'), idx);
  $('cursor').hidden = false;
  describe(idx);
}

let wheelAt = 0;
function onWheel(ev) {
  if (!ctx.state.cells || ev.ctrlKey) return;
  ev.preventDefault();
  // One zoom step per gesture burst: trackpads send dozens of small events.
  const now = performance.now();
  if (now - wheelAt < 180 || Math.abs(ev.deltaY) < 1) return;
  wheelAt = now;
  const idx = cellUnder(ev);
  const w = win();
  const guest = idx >= 0 ? w.start + idx * w.cellSize + w.cellSize / 2 : anchor();
  zoomAt(guest, ev.deltaY < 0 ? 1 : -1);
}

let drag = null;
function onDown(ev) {
  if (ev.button !== 0 || !ctx.state.cells) return;
  const w = win();
  drag = { x: ev.clientX, y: ev.clientY, start: w.start, moved: false, cell: cellUnder(ev) };
  const move = (e) => {
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 5) return;
    drag.moved = true;
    $('map').classList.add('dragging');
    if (!view.zoom) return;
    const { cols, size } = ctx.state.layout;
    // Dragging moves the disk with the pointer: rows up and down, cells sideways.
    const cells = Math.round(dx / size) + Math.round(dy / size) * cols;
    const to = drag.start - cells * win().cellSize;
    if (to !== view.start) setWindow(view.zoom, to);
  };
  const up = () => {
    window.removeEventListener('mousemove', move);
    window.removeEventListener('mouseup', up);
    $('map').classList.remove('dragging');
    const d = drag;
    drag = null;
    if (!d.moved && d.cell >= 0) {
      view.cursor = d.cell;
      pin(d.cell);
    }
  };
  window.addEventListener('mousemove', move);
  window.addEventListener('mouseup', up);
}

function onKey(ev) {
  const w = win();
  if (!w || !ctx.state.layout) return;
  const cols = ctx.state.layout.cols;
  let to = null;
  switch (ev.key) {
    case 'ArrowLeft': to = view.cursor - 1; break;
    case 'ArrowRight': to = view.cursor + 1; break;
    case 'ArrowUp': to = view.cursor - cols; break;
    case 'ArrowDown': to = view.cursor + cols; break;
    case 'Home': to = 0; break;
    case 'End': to = w.cellCount - 1; break;
    case 'PageUp':
    case 'PageDown': {
      if (!view.zoom) return;
      ev.preventDefault();
      const g = w.start + view.cursor * w.cellSize;
      const step = (ev.key === 'PageUp' ? -1 : 1) * w.cellCount * w.cellSize;
      setWindow(view.zoom, w.start + step, g + step);
      return;
    }
    case '+':
    case '=':
      ev.preventDefault();
      zoomAt(w.start + view.cursor * w.cellSize, 1);
      return;
    case '-':
    case '_':
      ev.preventDefault();
      zoomAt(w.start + view.cursor * w.cellSize, -1);
      return;
    case '0':
      ev.preventDefault();
      setWindow(0, 0, w.start + view.cursor * w.cellSize);
      return;
    case 'Enter':
    case ' ':
      ev.preventDefault();
      pin(view.cursor);
      return;
    case 'Escape':
      if (view.pinned) {
        ev.preventDefault();
        unpin();
      }
      return;
    default:
      return;
  }
  ev.preventDefault();
  if (to < 0 || to >= w.cellCount) {
    // Past the window's edge: the window moves by one row (or cell) to follow.
    if (!view.zoom) return;
    const g = w.start + to * w.cellSize;
    if (g < 0 || g >= ctx.state.cells.virtualSize) return;
    setWindow(view.zoom, w.start + (to < 0 ? -1 : 1) * (Math.abs(ev.key === 'ArrowUp' || ev.key === 'ArrowDown' ? cols : 1)) * w.cellSize, g);
    return;
  }
  view.cursor = to;
  showCursor(true);
  describe(to);
}

// ---------------------------------------------------------------------------------------
// What a cell holds

let lookupInFlight = false;
let lookupWanted = null;

function classLabel(w, idx) {
  const k = classInfo(w).find((x) => x.id === w.classes[idx]);
  return k ? k.label.toLowerCase() : 'unknown';
}

function versionOf(w, idx) {
  // GOW3 versions are per whole-disk cell.
  const full = ctx.state.cells;
  if (view.layer !== null) return undefined;
  return views.versionAt(Math.floor((w.start + idx * w.cellSize) / full.cellSize));
}

function describe(idx) {
  const w = win();
  const { start, length } = cellRange(idx);
  const v = versionOf(w, idx);
  const grouped = w.cellSize > ctx.state.opened.clusterSize;
  $('hover').replaceChildren(
    el('strong', {}, `Guest ${hex(start)}–${hex(start + length - 1)}`),
    ` (${human(length)}): ${classLabel(w, idx)}${grouped ? ' (mostly)' : ''}${v === undefined ? '' : v ? `, version ${v}` : ', never written'}…`,
  );
  lookupWanted = { start, length, idx, to: 'hover' };
  pumpLookup();
}

async function pumpLookup() {
  if (lookupInFlight || !lookupWanted) return;
  const want = lookupWanted;
  lookupWanted = null;
  lookupInFlight = true;
  try {
    const r = await ctx.client.call({ type: 'lookup', start: want.start, length: want.length, limit: want.to === 'pin' ? 8 : 4, layer: view.layer ?? undefined });
    if (want.to === 'hover' && (want.idx === view.hover || (view.hover < 0 && want.idx === view.cursor))) showWhere(want, r);
    if (want.to === 'pin' && view.pinned && view.pinned.start === want.start) fillDetails(want, r);
  } catch (err) {
    if (want.to === 'hover') $('hover').append(` (${err.message})`);
    else $('map-details-body').replaceChildren(el('p', {}, `Could not look this cell up: ${err.message}`));
  } finally {
    lookupInFlight = false;
    // At most one request in flight: the latest wanted one goes next, the rest are dropped.
    setTimeout(pumpLookup, 30);
  }
}

function whereText(e) {
  const layers = win().layers;
  if (e.invalidEntry !== undefined) return `invalid: the table entry at byte ${fmtOffset(e.invalidEntry)} of ${e.layer} points outside the file`;
  if (e.missing) return `in the missing backing file (named by ${layers[layers.length - 1]})`;
  if (e.data && !e.zero && e.hostOffset !== undefined) return `stored in ${e.layer} at byte ${fmtOffset(e.hostOffset)}${e.depth > 0 ? ` (backing ${e.depth})` : ''}`;
  if (e.compressed) return `compressed in ${e.layer}`;
  if (e.present) return `zeros, defined by ${e.layer}${e.depth > 0 ? ` (backing ${e.depth})` : ''}`;
  return 'not allocated anywhere: reads as zeros';
}

function showWhere(want, r) {
  const lines = r.entries.map((e) => el('span', { class: 'where' }, el('span', { class: 'mono' }, `${hex(e.start)} +${human(e.length)}`), ` ${whereText(e)}`));
  if (r.more) lines.push(el('span', { class: 'where muted' }, `…and ${r.more} more runs in this cell`));
  const v = versionOf(win(), want.idx);
  const version = v === undefined ? '' : v ? `, version ${v}` : ', never written';
  $('hover').replaceChildren(el('strong', {}, `Guest ${hex(want.start)}–${hex(want.start + want.length - 1)} (${human(want.length)})${version}`), ...lines);
}

function pin(idx) {
  const w = win();
  const { start, length } = cellRange(idx);
  view.pinned = { start, length, idx };
  // A cell chosen here replaces the range another panel pointed at.
  if (view.marks) {
    view.marks = null;
    drawMarks();
  }
  const grouped = w.cellSize > ctx.state.opened.clusterSize;
  $('map-details-title').textContent = `Guest ${hex(start)}–${hex(start + length - 1)} (${human(length)})`;
  $('map-details-body').replaceChildren(el('p', { class: 'muted' }, 'Looking it up…'));
  const facts = [['Class', `${classLabel(w, idx)}${grouped ? ` (the class of most of its ${human(w.cellSize)}: this cell groups ${w.cellSize / ctx.state.opened.clusterSize} clusters)` : ''}`]];
  const v = versionOf(w, idx);
  if (v !== undefined) facts.push(['Version', v ? String(v) : 'never written']);
  if (view.layer !== null) facts.push(['Layer', `${w.layers[0]} alone`]);
  $('map-details-facts').replaceChildren(...facts.flatMap(([k, val]) => [el('dt', {}, k), el('dd', {}, val)]));
  $('map-details').hidden = false;
  positionDetails();
  lookupWanted = { start, length, idx, to: 'pin' };
  pumpLookup();
}

function unpin() {
  view.pinned = null;
  $('map-details').hidden = true;
  $('map').focus();
}

function fillDetails(want, r) {
  const rows = r.entries.map((e) => {
    const item = el('li', {}, el('span', { class: 'mono' }, `${hex(e.start)} +${human(e.length)}`), ` ${whereText(e)}`);
    const extras = [];
    if (e.compressed) extras.push('compressed: decoded when read');
    if (e.zero && e.present && e.hostOffset !== undefined) extras.push('space is allocated in the file, but the cluster reads as zeros');
    if (extras.length) item.append(el('span', { class: 'muted' }, ` (${extras.join('; ')})`));
    if (e.hostOffset !== undefined && !e.missing && e.invalidEntry === undefined) {
      const label = `guest ${hex(e.start)} of ${e.layer}`;
      item.append(' ', el('button', {
        type: 'button',
        class: 'btn small show-bytes',
        onclick: () => document.dispatchEvent(new CustomEvent('diskscope:show-bytes', { detail: { file: e.layer, offset: e.hostOffset, length: Math.min(e.length, 4096), label } })),
      }, 'Show bytes'));
    }
    return item;
  });
  if (r.more) rows.push(el('li', { class: 'muted' }, `…and ${r.more} more runs in this cell; zoom in to see them one by one`));
  const meta = el('div', { class: 'details-meta' });
  $('map-details-body').replaceChildren(el('ul', { class: 'details-runs' }, ...rows), meta);
  positionDetails();
  loadFields(want, r, meta);
}

/** The metadata behind the cell's first runs: table entries, bitmap bits, versions. */
async function loadFields(want, r, box) {
  const seen = new Set();
  const items = [];
  for (const e of r.entries.slice(0, 3)) {
    // The layer that decided where these bytes come from: the one that holds them, or the top.
    const depth = e.present ? e.depth : 0;
    if (e.missing) continue;
    try {
      const fields = await ctx.client.call({ type: 'fields', guest: e.start, depth, layer: view.layer ?? undefined });
      if (!view.pinned || view.pinned.start !== want.start) return;
      const file = view.layer !== null ? win().layers[0] : win().layers[depth];
      for (const f of fields) {
        const key = `${file}:${f.offset}`;
        if (seen.has(key)) continue;
        seen.add(key);
        items.push(el('li', { dataset: { field: f.name } },
          el('span', { class: 'mono' }, f.name), ` of ${file}: ${f.value} `,
          el('button', {
            type: 'button',
            class: 'btn small show-field',
            title: f.note,
            onclick: () => document.dispatchEvent(new CustomEvent('diskscope:show-bytes', { detail: { file, offset: f.offset, length: Math.max(1, f.size), label: `${f.name} of ${file}` } })),
          }, `Bytes at ${hex(f.offset)}`),
        ));
      }
    } catch {
      // The metadata is an extra: the runs above already say where the bytes are.
    }
  }
  if (items.length) box.replaceChildren(el('p', { class: 'details-sub' }, 'Metadata'), el('ul', { class: 'details-runs' }, ...items));
  positionDetails();
}

/** The details box sits beside the pinned cell, inside the map's area (it never pushes the page). */
function positionDetails() {
  const box = $('map-details');
  const w = win();
  const p = view.pinned;
  if (!p || !w) return;
  const idx = Math.floor((p.start - w.start) / w.cellSize);
  $('map-pin').hidden = idx < 0 || idx >= w.cellCount;
  if (!$('map-pin').hidden) put($('map-pin'), idx);
  const wrap = $('map-wrap');
  const b = idx >= 0 && idx < w.cellCount ? cellBox(idx) : { x: 0, y: 0, size: 0 };
  const bw = Math.min(420, wrap.clientWidth);
  let x = b.x + b.size + 8;
  if (x + bw > wrap.clientWidth) x = Math.max(0, b.x - bw - 8);
  if (x < 0 || x + bw > wrap.clientWidth) x = Math.max(0, wrap.clientWidth - bw);
  box.style.left = `${x}px`;
  box.style.top = `${b.y + b.size + 6}px`;
  box.style.width = `${bw}px`;
}

// ---------------------------------------------------------------------------------------
// Requests from other panels

function showGuest(d) {
  const full = ctx.state.cells;
  const start = Number(d.start ?? d.offset);
  if (!full || !Number.isFinite(start)) return;
  const length = Math.max(1, Number(d.length) || 1);
  view.marks = { start, length, label: d.label || '' };
  const w = win();
  const inside = start >= w.start && start < w.start + w.cellCount * w.cellSize;
  $('map').scrollIntoView({ block: 'center', behavior: 'instant' in window ? 'instant' : 'auto' });
  $('map').focus({ preventScroll: true });
  if (!inside) {
    setWindow(view.zoom, start - windowBytes() / 2, start);
  } else {
    place(start);
    render();
    describe(view.cursor);
  }
  $('map').dataset.marked = `${start}+${length}`;
}

export function unavailable(err) {
  $('map-wrap').hidden = true;
  $('map-overview').hidden = true;
  $('legend').replaceChildren();
  $('map-scale').textContent = '';
  $('map-window').textContent = '';
  $('hover').textContent = '';
  $('map-details').hidden = true;
  $('map-unavailable').hidden = false;
  $('map-unavailable').textContent = `The map cannot be drawn: ${err.message}.`;
}

export function available() {
  $('map-overview').hidden = false;
}
