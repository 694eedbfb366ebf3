// The file layout: a to-scale strip of one file of the chain (header, tables, bitmaps,
// journal, data, and the free space between), a list of its regions, and the header
// diagram (a byte ruler with each field boxed and labelled). Clicking any of them shows
// those bytes in the hex view (hexview.js); `describe` names what a byte range holds.

import { $, el } from './dom.js';
import { hex, human, pct } from './format.js';
import { SHOW_BYTES } from './hexview.js';

const KINDS = [
  { key: 'header', label: 'Header', color: '#7c3aed' },
  { key: 'table', label: 'Tables', color: '#0d9488' },
  { key: 'bitmap', label: 'Bitmaps', color: '#65a30d' },
  { key: 'journal', label: 'Journal / log', color: '#c2410c' },
  { key: 'data', label: 'Guest data', color: '#2563eb' },
  { key: 'free', label: 'Free or unused', color: '#cbd5e1' },
];
const COLOR = Object.fromEntries(KINDS.map((k) => [k.key, k.color]));
const MAX_LISTED = 500; // regions listed as rows; the strip draws them all
const MAX_DIAGRAM_FIELDS = 400;

let ctx = null; // { state, client }
let layers = []; // the report's layers, top first
let hostData = null; // Float64Array [depth, offset, length, guest offset, compressed, ...] or null
let current = 0; // the layer shown
let items = []; // the shown layer's runs: { name, kind, offset, length }
let strips = []; // { canvas, from, to } drawn strips, for hit testing
let cursor = null; // { canvas, index }: the keyboard's item of `items` on one strip

export function init(c) {
  ctx = c;
  $('layout-file').addEventListener('change', () => {
    current = Number($('layout-file').value) || 0;
    render();
  });
  for (const id of ['strip', 'strip-zoom']) {
    const canvas = $(id);
    canvas.addEventListener('mousemove', (ev) => hover(canvas, ev));
    canvas.addEventListener('mouseleave', () => ($('strip-hover').textContent = HINT));
    canvas.addEventListener('click', (ev) => {
      const hit = hitTest(canvas, ev);
      if (hit) showItem(hit.item || { name: 'free space', kind: 'free', offset: hit.offset, length: 1 });
    });
    canvas.addEventListener('keydown', (ev) => onStripKey(canvas, ev));
  }
}

const HINT = 'Point at the strip to see what each part of the file holds, click to see its bytes; or tab to it and step through the regions with the arrow keys, Enter showing the bytes.';

const layersOf = (report) => {
  const { 'backing-chain': chain = [], ...top } = report;
  return [top, ...chain];
};

/** A new image was opened: draw its files' regions now; the data runs follow
 * (`loadHostData`). */
export function reset(opened) {
  layers = layersOf(opened.report);
  hostData = null;
  current = 0;
  $('layout-file').replaceChildren(...layers.map((l, i) => el('option', { value: String(i) }, `${l.filename}${i ? ` (backing file ${i})` : ''}`)));
  $('layout-file-label').hidden = layers.length < 2;
  render();
}

/** Where each layer's guest data sits in its file. Asked for once the map is drawn: it
 * walks the whole map again, and the worker answers in order. */
export async function loadHostData(seq) {
  try {
    const runs = await ctx.client.call({ type: 'hostdata', max: 100000 });
    if (seq !== ctx.state.openSeq) return;
    hostData = runs;
    render();
  } catch {
    // No map (an encrypted image): the strip keeps the regions the header lists.
  }
}

export function redraw() {
  if (layers.length) drawStrips();
}

function layerItems(i) {
  const l = layers[i];
  const out = (l.regions || []).map((r) => ({ name: r.name, kind: r.kind, offset: r.offset, length: r.length }));
  if (hostData) {
    for (let k = 0; k < hostData.length; k += 5) {
      if (hostData[k] === i) out.push({ name: 'guest data', kind: 'data', offset: hostData[k + 1], length: hostData[k + 2], mapped: true, guest: hostData[k + 3], compressed: hostData[k + 4] === 1 });
    }
  }
  return out.filter((x) => typeof x.offset === 'number' && typeof x.length === 'number' && x.length > 0).sort((a, b) => a.offset - b.offset);
}

/** Bytes per kind, counting each file byte once (header before table before data). */
function totals(list, size) {
  const order = ['header', 'journal', 'bitmap', 'table', 'data'];
  const t = Object.fromEntries(KINDS.map((k) => [k.key, 0]));
  const events = [];
  for (const x of list) {
    const a = Math.min(x.offset, size);
    const b = Math.min(x.offset + x.length, size);
    if (b > a) events.push([a, 1, x.kind], [b, -1, x.kind]);
  }
  events.sort((p, q) => p[0] - q[0]);
  const open = Object.fromEntries(order.map((k) => [k, 0]));
  let pos = 0;
  for (const [at, d, kind] of events) {
    const top = order.find((k) => open[k] > 0);
    t[top || 'free'] += at - pos;
    pos = at;
    open[kind] += d;
  }
  t.free += size - pos;
  return t;
}

function render() {
  const l = layers[current];
  if (!l) return;
  items = layerItems(current);
  const size = l['file-size'];
  const t = totals(items, size);
  $('layout-scale').textContent = `${l.filename} · ${human(size)} · drawn to scale`;
  $('strip-legend').replaceChildren(
    ...KINDS.filter((k) => t[k.key] > 0 || k.key === 'free').map((k) =>
      el('li', { dataset: { kind: k.key, bytes: String(t[k.key]) } },
        el('span', { class: `swatch swatch-${k.key}`, style: `background:${k.color}` }),
        el('span', { class: 'legend-label' }, k.key === 'data' && !hostData ? `${k.label} (regions the header lists)` : k.label),
        el('span', { class: 'legend-bytes' }, human(t[k.key])),
        el('span', { class: 'legend-pct' }, pct(t[k.key], size)),
      )),
  );
  $('strip').setAttribute('aria-label', `To-scale layout of ${l.filename}: ${KINDS.filter((k) => t[k.key] > 0).map((k) => `${k.label.toLowerCase()} ${pct(t[k.key], size)}`).join(', ')}. Arrow keys step through the regions, Enter shows their bytes; they are also listed below.`);
  cursor = null;
  drawStrips();
  renderRegions(l);
  renderDiagram(l);
  $('strip-hover').textContent = HINT;
}

function drawStrips() {
  const l = layers[current];
  const size = l['file-size'];
  strips = [];
  draw($('strip'), 0, size);
  // The metadata at the start of a big file is a sliver at full scale: zoom on it.
  const meta = items.filter((x) => x.kind !== 'data');
  const metaEnd = meta.reduce((m, x) => Math.max(m, x.offset + x.length), 0);
  const zoom = metaEnd > 0 && metaEnd < size / 8;
  $('strip-zoom-box').hidden = !zoom;
  if (zoom) {
    const to = Math.min(size, Math.ceil(metaEnd * 1.1));
    $('strip-zoom-label').textContent = `Zoomed on the first ${human(to)} (${hex(0)}–${hex(to - 1)}), where the metadata is:`;
    draw($('strip-zoom'), 0, to);
  }
}

function draw(canvas, from, to) {
  const width = Math.max(64, Math.floor(canvas.parentElement.clientWidth || 800));
  const height = 28;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.fillStyle = COLOR.free;
  g.fillRect(0, 0, width, height);
  const span = Math.max(1, to - from);
  const x = (off) => ((off - from) / span) * width;
  // Data first, so metadata drawn over it stays visible where they share a pixel.
  for (const pass of ['data', 'meta']) {
    for (const it of items) {
      if ((it.kind === 'data') !== (pass === 'data')) continue;
      if (it.offset >= to || it.offset + it.length <= from) continue;
      const x0 = Math.max(0, x(it.offset));
      const x1 = Math.min(width, x(it.offset + it.length));
      g.fillStyle = COLOR[it.kind] || '#000';
      g.fillRect(Math.floor(x0), 0, Math.max(1, Math.ceil(x1) - Math.floor(x0)), height);
      // Neighbours of one kind (a table after a table) keep a visible seam when there is room.
      if (pass === 'meta' && x1 - x0 >= 8) {
        g.fillStyle = 'rgba(255, 255, 255, 0.7)';
        g.fillRect(Math.floor(x0), 0, 1, height);
      }
    }
  }
  const it = cursor && cursor.canvas === canvas ? items[cursor.index] : null;
  if (it) {
    // The keyboard's region: a frame wide enough to see on a one-pixel sliver.
    const x0 = Math.max(0, Math.floor(x(it.offset)));
    const w = Math.max(4, Math.ceil(x(it.offset + it.length)) - x0);
    g.lineWidth = 2;
    g.strokeStyle = '#fff';
    g.strokeRect(x0 + 1, 1, w - 2, height - 2);
    g.strokeStyle = '#111';
    g.strokeRect(x0 + 3, 3, Math.max(1, w - 6), height - 6);
  }
  strips.push({ canvas, from, to, width });
}

/** Arrow keys step through the regions this strip shows, Home and End jump, Enter shows
 * the region's bytes: the strip is usable without a mouse. */
function onStripKey(canvas, ev) {
  const s = strips.find((x) => x.canvas === canvas);
  if (!s) return;
  const shown = [];
  items.forEach((it, i) => {
    if (it.offset < s.to && it.offset + it.length > s.from) shown.push(i);
  });
  if (!shown.length) return;
  let pos = cursor && cursor.canvas === canvas ? shown.indexOf(cursor.index) : -1;
  const key = ev.key;
  if (key === 'Enter' || key === ' ') {
    if (pos >= 0) showItem(items[shown[pos]]);
    ev.preventDefault();
    return;
  }
  if (key === 'ArrowRight' || key === 'ArrowDown') pos = Math.min(shown.length - 1, pos + 1);
  else if (key === 'ArrowLeft' || key === 'ArrowUp') pos = Math.max(0, pos - 1);
  else if (key === 'Home') pos = 0;
  else if (key === 'End') pos = shown.length - 1;
  else return;
  ev.preventDefault();
  cursor = { canvas, index: shown[pos] };
  drawStrips();
  $('strip-hover').replaceChildren(itemText(items[cursor.index], `region ${pos + 1} of ${shown.length} · Enter shows its bytes`));
}

function itemText(it, action) {
  return el('span', {}, el('strong', {}, capital(it.name)), ` ${it.kind} · ${hex(it.offset)}–${hex(it.offset + it.length - 1)} (${human(it.length)}) · ${action}`);
}

function hitTest(canvas, ev) {
  const s = strips.find((x) => x.canvas === canvas);
  if (!s) return null;
  const px = ev.clientX - canvas.getBoundingClientRect().left;
  const per = (s.to - s.from) / s.width;
  const offset = Math.floor(s.from + px * per);
  const slack = per * 1.5; // a one-pixel region is hard to hit exactly
  let best = null;
  for (const it of items) {
    if (it.offset - slack <= offset && offset < it.offset + it.length + slack) {
      const score = (it.kind === 'data' ? 1e18 : 0) + it.length;
      if (!best || score < best.score) best = { item: it, score };
    }
  }
  return { offset: Math.max(0, Math.min(offset, layers[current]['file-size'] - 1)), item: best && best.item };
}

function hover(canvas, ev) {
  const hit = hitTest(canvas, ev);
  if (!hit) return;
  const it = hit.item;
  $('strip-hover').replaceChildren(it
    ? itemText(it, 'click to see its bytes')
    : el('span', {}, el('strong', {}, 'Free or unused'), ` at ${hex(hit.offset)}: no header, table or guest data lives here`));
}

const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

function showItem(it) {
  const file = layers[current].filename;
  document.dispatchEvent(new CustomEvent(SHOW_BYTES, { detail: { file, offset: it.offset, length: it.length, label: it.kind === 'free' ? 'free space' : it.name === it.kind ? it.name : `${it.name} (${it.kind})` } }));
}

function renderRegions(l) {
  const listed = items.filter((x) => !x.mapped);
  $('regions-count').textContent = `${listed.length.toLocaleString('en-US')} region${listed.length === 1 ? '' : 's'} the ${l.format} metadata lists`;
  $('regions').tBodies[0].replaceChildren(
    ...listed.slice(0, MAX_LISTED).map((r) =>
      el('tr', { dataset: { region: r.name } },
        el('td', {}, el('span', { class: 'swatch', style: `background:${COLOR[r.kind] || '#000'}` })),
        el('td', {}, el('button', { type: 'button', class: 'link region-link', onclick: () => showItem(r) }, r.name)),
        el('td', {}, r.kind),
        el('td', { class: 'num mono' }, hex(r.offset)),
        el('td', { class: 'num' }, human(r.length)),
      )),
  );
  $('regions-more').hidden = listed.length <= MAX_LISTED;
  $('regions-more').textContent = `…and ${(listed.length - MAX_LISTED).toLocaleString('en-US')} more (all drawn on the strip).`;
}

// ---------------------------------------------------------------------------------------
// Header diagram: 16 bytes a row; a field is one box per row it touches. Rows wholly inside
// one long field collapse to a single "continues" row; rows no field touches are skipped
// with a note of how many bytes lie between.

const ROW = 16;

function renderDiagram(l) {
  const box = $('header-diagram');
  const fields = (l['header-fields'] || []).filter((f) => typeof f.offset === 'number' && typeof f.size === 'number' && f.size > 0)
    .sort((a, b) => a.offset - b.offset || b.size - a.size);
  if (!fields.length) {
    box.replaceChildren(el('p', { class: 'muted' }, `${l.filename} has no header fields (${l.format}: byte N of the file is byte N of the disk).`));
    return;
  }
  // Overlapping fields (a bit field inside a word) stay in the table, not in the diagram.
  const shown = [];
  let end = -1;
  for (const f of fields) {
    if (f.offset < end) continue;
    shown.push(f);
    end = f.offset + f.size;
    if (shown.length >= MAX_DIAGRAM_FIELDS) break;
  }
  const pieces = new Map(); // row -> [{ f, from, to, cont }]
  const add = (row, p) => {
    if (!pieces.has(row)) pieces.set(row, []);
    pieces.get(row).push(p);
  };
  for (const f of shown) {
    const first = Math.floor(f.offset / ROW);
    const last = Math.floor((f.offset + f.size - 1) / ROW);
    const clip = (row) => ({ f, from: Math.max(f.offset, row * ROW) - row * ROW, to: Math.min(f.offset + f.size, (row + 1) * ROW) - row * ROW });
    add(first, { ...clip(first), head: true });
    if (last > first + 1) add(first + 1, { f, skipped: last - first - 1 });
    if (last > first) add(last, clip(last));
  }
  const rows = [...pieces.keys()].sort((a, b) => a - b);
  const out = [el('div', { class: 'hd-row hd-ruler', 'aria-hidden': 'true' },
    el('span', { class: 'hd-off' }, ''),
    el('span', { class: 'hd-cells' }, ...Array.from({ length: ROW }, (_, i) => el('span', { class: 'hd-tick', style: `grid-column:${i + 1}` }, `+${i.toString(16)}`))))];
  let prev = null;
  for (const row of rows) {
    const ps = pieces.get(row);
    if (prev !== null && row > prev + 1 && !ps.some((p) => p.skipped !== undefined)) {
      out.push(el('div', { class: 'hd-gap' }, `${((row - prev - 1) * ROW).toLocaleString('en-US')} bytes outside the header fields`));
    }
    prev = row;
    const cont = ps.find((p) => p.skipped !== undefined);
    if (cont) {
      out.push(el('div', { class: 'hd-row hd-cont' }, el('span', { class: 'hd-off' }, '⋮'),
        el('span', { class: 'hd-contlabel' }, `${(cont.skipped * ROW).toLocaleString('en-US')} more bytes of ${cont.f.name}`)));
      prev = row + cont.skipped - 1;
      continue;
    }
    out.push(el('div', { class: 'hd-row' },
      el('span', { class: 'hd-off mono' }, hex(row * ROW)),
      el('span', { class: 'hd-cells' }, ...ps.map((p) => fieldBox(l, p)))));
  }
  if (shown.length < fields.length) out.push(el('p', { class: 'muted small' }, `${fields.length - shown.length} overlapping or further fields are in the table below.`));
  box.replaceChildren(...out);
}

function fieldBox(l, p) {
  const f = p.f;
  const width = p.to - p.from;
  const label = p.head ? f.name : `${f.name} (cont.)`;
  return el('button', {
    type: 'button',
    class: `hd-field${p.head ? '' : ' hd-tail'}${width <= 2 ? ' hd-narrow' : ''}`,
    style: `grid-column:${p.from + 1} / span ${width}`,
    title: `${f.name} = ${f.value} · offset ${f.offset} (${hex(f.offset)}), ${f.size} byte${f.size === 1 ? '' : 's'}${f.note ? ` · ${f.note}` : ''}`,
    dataset: { field: f.name },
    onclick: () => document.dispatchEvent(new CustomEvent(SHOW_BYTES, { detail: { file: l.filename, offset: f.offset, length: f.size, label: `field ${f.name} = ${f.value}` } })),
  },
  el('span', { class: 'hd-name' }, label),
  // Screen readers hear the value and place even where the box is too narrow to show them.
  p.head && width >= 4 ? el('span', { class: 'hd-value' }, el('span', { class: 'sr-only' }, ' = '), f.value) : el('span', { class: 'sr-only' }, ` = ${f.value}`),
  el('span', { class: 'sr-only' }, `, ${f.size} byte${f.size === 1 ? '' : 's'} at offset ${f.offset}`));
}

// ---------------------------------------------------------------------------------------

/** What bytes [start, end) of dropped file `file` hold, in words, for the hex view. */
/** Guest data named by where the guest reads it: the first selected byte's guest offset. */
function guestName(r, start) {
  if (r.compressed) return `compressed guest data (the cluster at guest offset ${hex(r.guest)})`;
  return `guest data (guest offset ${hex(r.guest + Math.max(0, start - r.offset))})`;
}

export function describe(file, start, end) {
  const i = layers.findIndex((l) => l.filename === file);
  if (i < 0) return 'not a file of this chain (a companion or unused file): nothing here names its bytes';
  const l = layers[i];
  const overlap = (o, n) => o < end && start < o + n;
  const fields = (l['header-fields'] || []).filter((f) => f.size > 0 && overlap(f.offset, f.size));
  const regions = layerItems(i).filter((r) => overlap(r.offset, r.length));
  const parts = [];
  if (fields.length) {
    const names = fields.slice(0, 4).map((f) => `${f.name} (${f.value})`);
    parts.push(`field${fields.length > 1 ? 's' : ''} ${names.join(', ')}${fields.length > 4 ? ` and ${fields.length - 4} more` : ''}`);
  }
  const named = [...new Set(regions.map((r) => (r.mapped ? guestName(r, start) : r.name === r.kind ? r.name : `${r.name} (${r.kind})`)))];
  if (named.length) parts.push(`in ${named.slice(0, 3).join(', ')}${named.length > 3 ? ` and ${named.length - 3} more` : ''}`);
  if (!parts.length) return 'no header field, table or guest data: free or unused space';
  return parts.join(' · ');
}
