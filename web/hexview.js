// The hex view: any dropped file's bytes, 16 a row, fetched from the worker in 4 KiB pages
// as rows come into view (a 256 GiB file costs what its visible rows cost). Only ROWS rows
// exist in the DOM; scrolling changes which file offset they show, so nothing jumps.
//
// Other parts of the page ask for bytes with one DOM event (the contract mapdemo's map and
// the findings panel rely on):
//
//   document.dispatchEvent(new CustomEvent('diskscope:show-bytes', { detail: {
//     file,    // name of a dropped file (a chain layer's name is its file's name); omitted: the top image
//     offset,  // first byte, a number (file offset, not guest offset)
//     length,  // bytes to highlight (>= 1; 0 or omitted: one byte)
//     label,   // optional words for what these bytes are ("field cluster_size", "L2 table 3")
//   }}));
//
// The view then shows that file scrolled to `offset`, highlights the range, scrolls itself
// into sight and takes the keyboard focus. Selecting bytes (mouse drag, or Shift+arrows)
// names the header fields and regions they fall in (see `describe`).

import { $, el } from './dom.js';
import { hex, human } from './format.js';

export const SHOW_BYTES = 'diskscope:show-bytes';

const COLS = 16;
const ROWS = 16;
const PAGE = 4096;
const CACHE_PAGES = 256; // 1 MiB of file bytes kept

let ctx = null; // { state, client, describe(file, start, end) -> string }
const view = {
  file: null, // dropped file name
  size: 0,
  top: 0, // offset of the first row shown (a multiple of COLS)
  hl: null, // { start, end, label } highlighted range (end exclusive)
  anchor: null, // selection: anchor and caret byte offsets (inclusive)
  caret: null,
  cache: new Map(), // `${file}:${page}` -> Uint8Array
  pending: new Set(),
  session: 0, // bumped per opened image; answers for an older one are dropped
};
const cells = []; // per row: { off, bytes: span[16], ascii: span[16] }

export function init(c) {
  ctx = c;
  buildGrid();
  document.addEventListener(SHOW_BYTES, (ev) => show(ev.detail || {}));
  $('hex-file').addEventListener('change', () => setFile($('hex-file').value, 0));
  $('hex-goto').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = parseOffset($('hex-offset').value);
    if (v === null || v >= view.size) {
      status(`“${$('hex-offset').value}” is not an offset in ${view.file} (0 to ${hex(Math.max(0, view.size - 1))}).`);
      return;
    }
    select(v, v);
    scrollTo(v - 2 * COLS);
    $('hex-grid').focus();
  });
  $('hex-pos').addEventListener('input', () => scrollTo(Number($('hex-pos').value) * COLS));
  const grid = $('hex-grid');
  grid.addEventListener('wheel', (ev) => {
    if (!view.file) return;
    ev.preventDefault();
    scrollTo(view.top + Math.sign(ev.deltaY) * 3 * COLS);
  }, { passive: false });
  grid.addEventListener('keydown', onKey);
  let dragging = false;
  grid.addEventListener('mousedown', (ev) => {
    const off = offsetOf(ev.target);
    if (off === null) return;
    ev.preventDefault();
    grid.focus();
    dragging = true;
    select(ev.shiftKey && view.anchor !== null ? view.anchor : off, off);
  });
  grid.addEventListener('mouseover', (ev) => {
    if (!dragging) return;
    const off = offsetOf(ev.target);
    if (off !== null) select(view.anchor, off);
  });
  window.addEventListener('mouseup', () => (dragging = false));
}

/** A new image was opened: its files, and the hex view back at the top image's start. */
export function reset(opened) {
  view.session++;
  view.cache.clear();
  view.pending.clear();
  view.hl = null;
  view.anchor = view.caret = null;
  const files = opened.files.filter((f) => f.role !== 'not-an-image');
  $('hex-file').replaceChildren(...files.map((f) => el('option', { value: f.name }, `${f.name} (${human(f.size)})`)));
  setFile(opened.top, 0, false);
  status('Select bytes (drag, or Shift+arrow keys) to see which field or region they belong to.');
  $('hex-label').textContent = '';
}

/** Once the map is drawn: fill the view with the top file's first bytes (its header) so the
 * card is never an empty box. Not at `reset`, where the read would queue in the worker
 * ahead of the map. */
export function fill(seq) {
  if (seq === ctx.state.openSeq && ctx.state.opened && view.session && !view.hl) draw();
}

function fileInfo(name) {
  return ctx.state.opened && ctx.state.opened.files.find((f) => f.name === name);
}

function setFile(name, offset, render = true) {
  const f = fileInfo(name);
  if (!f) return false;
  if (view.file !== name) {
    view.hl = null;
    view.anchor = view.caret = null;
    $('hex-label').textContent = '';
  }
  view.file = name;
  view.size = f.size;
  $('hex-file').value = name;
  const rows = Math.max(1, Math.ceil(f.size / COLS));
  $('hex-pos').max = String(Math.max(0, rows - ROWS));
  $('hex-grid').setAttribute('aria-label', `Bytes of ${name}`);
  scrollTo(offset, render);
  return true;
}

/** Show `detail` (see the contract at the top): file, offset, length, label. */
export function show({ file, offset = 0, length = 1, label = '' } = {}) {
  if (!ctx.state.opened) return;
  const name = file || ctx.state.opened.top;
  if (!fileInfo(name)) {
    status(`${name} was not among the dropped files, so its bytes cannot be shown.`);
    $('bytes-card').scrollIntoView({ block: 'nearest' });
    return;
  }
  offset = Math.max(0, Math.floor(Number(offset) || 0));
  length = Math.max(1, Math.floor(Number(length) || 1));
  setFile(name, offset, false);
  const end = Math.min(offset + length, Math.max(view.size, offset + 1));
  view.hl = { start: offset, end, label };
  view.anchor = null; // no selection yet; the keyboard starts from the range's first byte
  view.caret = offset < view.size ? offset : null;
  $('hex-label').replaceChildren(
    el('strong', {}, label ? capital(label) : 'Bytes'),
    ` · ${name} ${hex(offset)}–${hex(end - 1)} (${(end - offset).toLocaleString('en-US')} byte${end - offset === 1 ? '' : 's'})`,
    offset >= view.size ? ' · past the end of the file' : '',
  );
  // Two rows of context above the range, unless that would go before the file.
  scrollTo(offset - 2 * COLS);
  status(describeRange(offset, end - 1));
  $('bytes-card').scrollIntoView({ block: 'start' });
  $('hex-grid').focus({ preventScroll: true });
}

const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

function parseOffset(text) {
  const t = String(text).trim().replace(/[_,\s]/g, '');
  if (/^0x[0-9a-f]+$/i.test(t)) return parseInt(t.slice(2), 16);
  if (/^\d+$/.test(t)) return Number(t);
  return null;
}

function status(text) {
  $('hex-status').textContent = text;
}

// ---------------------------------------------------------------------------------------
// Rows

function buildGrid() {
  const head = el('div', { class: 'hex-row hex-head', 'aria-hidden': 'true' },
    el('span', { class: 'hex-off' }, 'offset'),
    el('span', { class: 'hex-bytes' }, ...Array.from({ length: COLS }, (_, i) => el('span', { class: 'hex-b' }, i.toString(16).padStart(2, '0')))),
    el('span', { class: 'hex-ascii' }, 'text'),
  );
  const rows = [];
  for (let r = 0; r < ROWS; r++) {
    const bytes = [];
    const ascii = [];
    for (let i = 0; i < COLS; i++) {
      bytes.push(el('span', { class: 'hex-b', dataset: { i: String(r * COLS + i) } }));
      ascii.push(el('span', { class: 'hex-a', dataset: { i: String(r * COLS + i) } }));
    }
    const off = el('span', { class: 'hex-off' });
    cells.push({ off, bytes, ascii });
    rows.push(el('div', { class: 'hex-row' }, off, el('span', { class: 'hex-bytes' }, ...bytes), el('span', { class: 'hex-ascii' }, ...ascii)));
  }
  $('hex-grid').replaceChildren(head, ...rows);
}

function offsetOf(target) {
  const i = target && target.dataset ? target.dataset.i : undefined;
  if (i === undefined) return null;
  const off = view.top + Number(i);
  return off < view.size ? off : null;
}

function scrollTo(offset, render = true) {
  const last = Math.max(0, (Math.ceil(view.size / COLS) - ROWS) * COLS);
  view.top = Math.min(Math.max(0, Math.floor(offset / COLS) * COLS), last);
  $('hex-pos').value = String(view.top / COLS);
  if (render) draw();
}

function byteAt(off) {
  const page = view.cache.get(`${view.file}:${Math.floor(off / PAGE)}`);
  return page ? page[off % PAGE] : undefined;
}

function draw() {
  const grid = $('hex-grid');
  const selLo = view.anchor === null ? -1 : Math.min(view.anchor, view.caret);
  const selHi = view.anchor === null ? -2 : Math.max(view.anchor, view.caret);
  const hl = view.hl;
  let missing = false;
  for (let r = 0; r < ROWS; r++) {
    const rowOff = view.top + r * COLS;
    const row = cells[r];
    row.off.textContent = rowOff < view.size ? rowOff.toString(16).padStart(10, '0') : '';
    for (let i = 0; i < COLS; i++) {
      const off = rowOff + i;
      const b = off < view.size ? byteAt(off) : null;
      if (b === undefined) missing = true;
      const inFile = off < view.size;
      row.bytes[i].textContent = !inFile ? '' : b === undefined ? '··' : b.toString(16).padStart(2, '0');
      row.ascii[i].textContent = !inFile ? '' : b === undefined ? '·' : b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
      const cls = `${inFile && hl && off >= hl.start && off < hl.end ? ' hl' : ''}${off >= selLo && off <= selHi ? ' sel' : ''}${off === view.caret ? ' caret' : ''}${b === 0 ? ' zero' : ''}`;
      row.bytes[i].className = `hex-b${cls}`;
      row.ascii[i].className = `hex-a${cls}`;
    }
  }
  Object.assign(grid.dataset, {
    file: view.file || '',
    top: String(view.top),
    hlStart: hl ? String(hl.start) : '',
    hlEnd: hl ? String(hl.end) : '',
    loaded: String(!missing),
  });
  $('hex-where').textContent = view.size
    ? `${hex(view.top)}–${hex(Math.min(view.top + ROWS * COLS, view.size) - 1)} of ${human(view.size)}`
    : 'empty file';
  if (missing) load();
}

/** Ask the worker for the visible pages not cached yet; redraw as each arrives. */
function load() {
  const first = Math.floor(view.top / PAGE);
  const last = Math.floor(Math.min(view.top + ROWS * COLS, view.size) - 1) / PAGE;
  const session = view.session;
  for (let p = first; p <= Math.floor(last); p++) {
    const key = `${view.file}:${p}`;
    if (view.cache.has(key) || view.pending.has(key)) continue;
    view.pending.add(key);
    ctx.client.call({ type: 'bytes', file: view.file, offset: p * PAGE, length: PAGE }).then(
      (r) => {
        if (session !== view.session) return;
        view.pending.delete(key);
        view.cache.set(key, r.bytes);
        if (view.cache.size > CACHE_PAGES) view.cache.delete(view.cache.keys().next().value);
        draw();
      },
      (err) => {
        if (session !== view.session) return;
        view.pending.delete(key);
        status(`Could not read ${view.file} at ${hex(p * PAGE)}: ${err.message}`);
      },
    );
  }
}

// ---------------------------------------------------------------------------------------
// Selection

function select(anchor, caret) {
  view.anchor = Math.min(Math.max(0, anchor), view.size - 1);
  view.caret = Math.min(Math.max(0, caret), view.size - 1);
  if (view.caret < view.top) scrollTo(view.caret, false);
  else if (view.caret >= view.top + ROWS * COLS) scrollTo(view.caret - (ROWS - 1) * COLS, false);
  draw();
  status(describeRange(Math.min(view.anchor, view.caret), Math.max(view.anchor, view.caret)));
}

/** "Bytes 0x8–0xb (4 bytes): field cluster_size (header of top.qed) · region header". */
function describeRange(lo, hi) {
  const n = hi - lo + 1;
  const what = ctx.describe(view.file, lo, hi + 1);
  return `Bytes ${hex(lo)}–${hex(hi)} (${n.toLocaleString('en-US')} byte${n === 1 ? '' : 's'}) of ${view.file}: ${what}.`;
}

function onKey(ev) {
  if (!view.file || !view.size) return;
  const caret = view.caret === null ? view.top : view.caret;
  const page = ROWS * COLS;
  const moves = {
    ArrowLeft: -1, ArrowRight: 1, ArrowUp: -COLS, ArrowDown: COLS, PageUp: -page, PageDown: page,
  };
  let to;
  if (ev.key in moves) to = caret + moves[ev.key];
  else if (ev.key === 'Home') to = ev.ctrlKey ? 0 : caret - (caret % COLS);
  else if (ev.key === 'End') to = ev.ctrlKey ? view.size - 1 : caret - (caret % COLS) + COLS - 1;
  else if (ev.key === 'Escape') {
    view.anchor = view.caret = null;
    draw();
    return;
  } else return;
  ev.preventDefault();
  to = Math.min(Math.max(0, to), view.size - 1);
  if (ev.key === 'PageUp' || ev.key === 'PageDown') scrollTo(view.top + moves[ev.key], false);
  select(ev.shiftKey ? (view.anchor ?? caret) : to, to);
}
