// Format-specific views: the warnings banner, journal/log records with the "as stored /
// replayed" switch, GOW3 block versions (map colouring, histogram, map-entry table,
// master/local delta), qcow2 snapshots and the host-file cluster map. Each view is shown
// only when the open image has its data; every byte is read in the worker.

import { $, el } from './dom.js';
import { drawMap, layoutMap, cellAt } from './map.js';
import { bytes, hex, human, pct } from './format.js';

let ctx = null; // { state, client, reopen(view), showError, renderMap }

export function init(c) {
  ctx = c;
  $('records-stored').addEventListener('click', () => setReplay(true));
  $('records-replayed').addEventListener('click', () => setReplay(false));
  $('mode-allocation').addEventListener('click', () => setMapMode('allocation'));
  $('mode-versions').addEventListener('click', () => setMapMode('versions'));
  $('entries-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    entriesSearch();
  });
  $('entries-prev').addEventListener('click', () => entriesPage(-1));
  $('entries-next').addEventListener('click', () => entriesPage(1));
  $('entries-mode').addEventListener('change', () => {
    $('entries-value').disabled = ['all', 'allocated'].includes($('entries-mode').value);
  });
  $('delta-run').addEventListener('click', runDelta);
  $('delta-swap').addEventListener('click', () => {
    const m = $('delta-master').value;
    $('delta-master').value = $('delta-local').value;
    $('delta-local').value = m;
  });
  $('delta-export').addEventListener('click', exportDelta);
  $('snapshot-back').addEventListener('click', () => ctx.reopen({ snapshot: null }));
  $('hostmap').addEventListener('mousemove', onHostMove);
  $('hostmap').addEventListener('mouseleave', () => ($('hostmap-hover').textContent = HOST_HINT));
  $('delta-map').addEventListener('mousemove', onDeltaMove);
}

const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const layersOf = (report) => {
  const { 'backing-chain': chain = [], ...top } = report;
  return [top, ...chain];
};

// ---------------------------------------------------------------------------------------
// Warnings banner

/** What a support engineer must know first, by finding code: a title in plain words. */
const WARNINGS = {
  encrypted: { title: 'The data is encrypted: cannot convert', rank: 0 },
  'corrupt-bit': { title: 'QEMU marked this image corrupt', rank: 1 },
  dirty: { title: 'Not closed cleanly (dirty bit set): reference counts may be stale', rank: 2 },
  'not-shut-down-cleanly': { title: 'Not shut down cleanly: the journal holds updates not yet applied', rank: 2 },
  'log-dirty': { title: 'Not shut down cleanly: the log holds updates not yet applied', rank: 2 },
  'backing-chain': { title: 'The backing chain is incomplete', rank: 3 },
  'external-data-file': { title: 'The guest data lives in an external data file', rank: 4 },
  zstd: { title: 'Compressed with zstd: older QEMU (before 5.1) and other tools cannot read it', rank: 5 },
  'compressed-clusters': { title: 'Holds compressed clusters: conversion decompresses them; some tools cannot read them', rank: 6 },
  'extended-l2': { title: 'Extended L2 entries (subclusters): QEMU before 5.2 cannot open it', rank: 7 },
};

export function warningsOf(o) {
  const byCode = new Map();
  const add = (code, severity, message, file) => {
    const w = byCode.get(code) || { code, severity, messages: [], count: 0, file };
    w.count++;
    if (w.messages.length < 3 && !w.messages.includes(message)) w.messages.push(message);
    if (severity === 'corruption') w.severity = 'corruption';
    byCode.set(code, w);
  };
  for (const c of o.checks) {
    if (c.error) {
      add('check-failed', 'corruption', `the check of ${c.layer} stopped: ${c.error.message}`, c.layer);
      continue;
    }
    for (const f of c.result.findings) {
      if (f.severity === 'warning' || f.severity === 'corruption' || WARNINGS[f.code]) add(f.code, f.severity, f.message, f.file);
    }
  }
  if (o.chainBreakFinding) add('backing-chain', o.chainBreakFinding.severity, o.chainBreakFinding.message, o.chainBreakFinding.file);
  for (const l of layersOf(o.report)) {
    for (const comp of l.companions || []) {
      if (!comp.found) add('missing-file', 'warning', `${l.filename} names “${comp.name}” as its ${comp.role}, which was not given`, l.filename);
    }
  }
  const rank = (w) => (WARNINGS[w.code] ? WARNINGS[w.code].rank : w.severity === 'corruption' ? 1.5 : 8);
  return [...byCode.values()].sort((a, b) => rank(a) - rank(b));
}

const GENERIC = {
  'missing-file': 'A file the image needs is missing',
  'check-failed': 'The check could not finish',
};

export function renderWarnings(o) {
  const list = warningsOf(o);
  const box = $('warnings');
  box.hidden = !list.length;
  $('warnings-list').replaceChildren(
    ...list.map((w) => {
      const title = WARNINGS[w.code]?.title || GENERIC[w.code] || capital(w.messages[0]);
      const detail = WARNINGS[w.code] || GENERIC[w.code] ? w.messages.map(capital).join(' ') : w.messages.slice(1).map(capital).join(' ');
      return el('li', { class: 'warning', dataset: { code: w.code, severity: w.severity } },
        el('span', { class: `sev sev-${w.severity}` }, w.severity === 'corruption' ? 'Corruption' : w.severity === 'warning' ? 'Warning' : 'Note'),
        el('span', { class: 'warning-text' },
          el('strong', {}, title),
          w.count > 1 ? el('span', { class: 'muted' }, ` (${w.count} findings)`) : null,
          detail ? el('span', { class: 'warning-detail' }, detail) : null,
        ),
      );
    }),
  );
}

/** Why the image cannot be converted to raw, or null. */
export function exportRefusal(o) {
  for (const c of o.checks) {
    for (const f of c.result?.findings || []) {
      if (f.code === 'encrypted' && c.layer === o.top) {
        return 'The data is encrypted: diskscope cannot convert it (it never asks for keys). Decrypt it with qemu-img convert and the passphrase, then inspect the result.';
      }
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// Journal / log records

function setReplay(asStored) {
  if (!!ctx.state.opened.asStored === asStored) return;
  ctx.reopen({ asStored });
}

export function renderRecords(o) {
  const top = layersOf(o.report)[0];
  const records = top.records || [];
  const card = $('records-card');
  card.hidden = !records.length;
  if (!records.length) return;
  const word = top.format === 'vhdx' ? 'log' : 'journal';
  $('records-title').textContent = top.format === 'vhdx' ? 'Log entries' : 'Journal records';
  const pending = records.filter((r) => !r.stale && !r.applied).length;
  const applied = records.filter((r) => r.applied).length;
  const stale = records.filter((r) => r.stale).length;
  const parts = [`${records.length} record${records.length === 1 ? '' : 's'} in the ${word}`];
  if (applied) parts.push(`${applied} applied in this view`);
  if (pending) parts.push(`${pending} not applied${o.asStored ? ' (shown as stored)' : ''}`);
  if (stale) parts.push(`${stale} stale (older than the current state, never applied)`);
  $('records-summary').textContent = `${parts.join(' · ')}.`;
  $('records-stored').setAttribute('aria-pressed', String(!!o.asStored));
  $('records-replayed').setAttribute('aria-pressed', String(!o.asStored));
  $('records-note').textContent = o.asStored
    ? `The map and header below are as stored in the file, without the ${word}’s pending updates.`
    : `The map below has the ${word} replayed in memory (as the format’s driver would on its next open); the file is never written.`;
  $('records').tBodies[0].replaceChildren(
    ...records.map((r, i) => {
      const status = r.stale ? 'stale' : r.applied ? 'applied' : 'pending';
      return el('tr', { dataset: { status } },
        el('td', { class: 'num' }, String(i + 1)),
        el('td', {}, r.kind),
        el('td', { class: 'num mono' }, `${r.offset.toLocaleString('en-US')}`, el('span', { class: 'muted' }, ` +${r.length}`)),
        el('td', { class: 'fields' }, ...r.fields.map(([k, v]) => el('span', { class: 'kv' }, el('span', { class: 'muted' }, `${k} `), el('span', { class: 'mono' }, v))),
          r.note ? el('span', { class: 'record-note muted' }, capital(r.note)) : null),
        el('td', {}, el('span', { class: `status status-${status}` }, status)),
      );
    }),
  );
}

// ---------------------------------------------------------------------------------------
// Snapshots (qcow2)

const pad = (n, w = 2) => String(n).padStart(w, '0');
function date(sec) {
  if (!sec) return '—';
  const d = new Date(sec * 1000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}
function clock(sec, nsec) {
  const h = Math.floor(sec / 3600);
  return `${pad(h)}:${pad(Math.floor((sec % 3600) / 60))}:${pad(sec % 60)}.${pad(Math.floor(nsec / 1e6), 3)}`;
}

export function renderSnapshots(o) {
  const snaps = o.snapshots || [];
  $('snapshots-card').hidden = !snaps.length;
  $('snapshot-banner').hidden = !o.snapshot;
  if (o.snapshot) {
    const s = snaps.find((x) => x.id === o.snapshot || x.name === o.snapshot);
    $('snapshot-banner-text').textContent = `Viewing snapshot ${s ? `“${s.name}” (id ${s.id})` : o.snapshot}: the map and Download raw show the disk as it was when the snapshot was taken.`;
  }
  if (!snaps.length) return;
  $('snapshots').tBodies[0].replaceChildren(
    ...snaps.map((s) => {
      const current = o.snapshot && (o.snapshot === s.id || o.snapshot === s.name);
      return el('tr', { class: current ? 'current' : '', dataset: { id: s.id, name: s.name } },
        el('td', { class: 'num mono' }, s.id),
        el('td', { class: 'snap-name' }, s.name),
        el('td', { class: 'num' }, s['virtual-size'] == null ? '—' : human(s['virtual-size'])),
        el('td', { class: 'num' }, s['vm-state-size'] ? human(s['vm-state-size']) : '0'),
        el('td', {}, date(s['date-sec'])),
        el('td', { class: 'mono' }, clock(s['vm-clock-sec'], s['vm-clock-nsec'])),
        el('td', {}, current
          ? el('span', { class: 'badge format' }, 'viewing')
          : el('button', { type: 'button', class: 'btn small snap-open', onclick: () => ctx.reopen({ snapshot: s.id }) }, 'View')),
      );
    }),
  );
}

// ---------------------------------------------------------------------------------------
// Host map (qcow2)

const HOST_COLORS = {
  free: '#e9edf2', header: '#0f172a', 'L1 table': '#7c3aed', 'L2 table': '#a78bfa', 'refcount table': '#0d9488',
  'refcount block': '#5eead4', 'snapshot table or snapshot L1 table': '#c2410c', bitmap: '#65a30d', 'encryption header': '#be185d',
  data: '#2563eb', 'compressed data': '#9333ea', 'data only snapshots use': '#f59e0b', 'leaked (refcount set, nothing uses it)': '#fb7185',
  'refcount lower than its references': '#dc2626',
};
const HOST_HINT = 'Point at a cell to see which host bytes it covers and what they hold.';
let host = null;

export async function loadHostMap(seq) {
  host = null;
  const card = $('hostmap-card');
  const o = ctx.state.opened;
  if (layersOf(o.report)[0].format !== 'qcow2') {
    card.hidden = true;
    return;
  }
  try {
    const h = await ctx.client.call({ type: 'hostmap', max: 1 << 16 });
    if (seq !== ctx.state.openSeq) return;
    card.hidden = !h;
    if (!h) return;
    host = h;
    renderHostMap();
  } catch (err) {
    if (seq !== ctx.state.openSeq) return;
    card.hidden = false;
    $('hostmap-legend').replaceChildren(el('li', { class: 'muted' }, `The host map could not be drawn: ${err.message}`));
  }
}

export function renderHostMap() {
  if (!host) return;
  const n = host.classes.length;
  host.layout = layoutMap(n, $('hostmap-wrap').clientWidth || 800);
  drawMap($('hostmap'), host.classes, host.layout, (c) => HOST_COLORS[host.legend[c]] || '#000000');
  $('hostmap-scale').textContent = `1 cell = ${human(host.cellSize)} of ${$('image-name').textContent} · file ${human(host.fileSize)}`;
  $('hostmap-legend').replaceChildren(
    ...host.legend.map((name, i) => ({ name, i })).filter(({ i }) => host.totals[i] > 0 || host.legend[i] === 'free').map(({ name, i }) =>
      el('li', { dataset: { class: name, bytes: String(host.totals[i]) } },
        el('span', { class: 'swatch', style: `background:${HOST_COLORS[name] || '#000'}` }),
        el('span', { class: 'legend-label' }, capital(name)),
        el('span', { class: 'legend-bytes' }, human(host.totals[i])),
        el('span', { class: 'legend-pct' }, pct(host.totals[i], host.fileSize)),
      )),
  );
  $('hostmap-hover').textContent = HOST_HINT;
}

function onHostMove(ev) {
  if (!host || !host.layout) return;
  const r = $('hostmap').getBoundingClientRect();
  const i = cellAt(host.layout, ev.clientX - r.left, ev.clientY - r.top, host.classes.length);
  if (i < 0) return;
  const start = i * host.cellSize;
  $('hostmap-hover').replaceChildren(el('strong', {}, `File ${hex(start)}–${hex(Math.min(start + host.cellSize, host.fileSize) - 1)}`), ` ${host.legend[host.classes[i]]}${host.cellSize > ctx.state.opened.clusterSize ? ' (mostly)' : ''}`);
}

// ---------------------------------------------------------------------------------------
// Block versions (GOW3)

const VIRIDIS = ['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725'];
const NEVER = '#e9edf2';

function mix(a, b, t) {
  const pa = parseInt(a.slice(1), 16);
  const pb = parseInt(b.slice(1), 16);
  const ch = (s) => Math.round(((pa >> s) & 255) * (1 - t) + ((pb >> s) & 255) * t);
  return `#${((ch(16) << 16) | (ch(8) << 8) | ch(0)).toString(16).padStart(6, '0')}`;
}

/** Colour of bucket b (1..255) on the scale; bucket 0 = never written. */
function scale(b) {
  if (b === 0) return NEVER;
  const t = (b - 1) / 254;
  const x = t * (VIRIDIS.length - 1);
  const k = Math.min(Math.floor(x), VIRIDIS.length - 2);
  return mix(VIRIDIS[k], VIRIDIS[k + 1], x - k);
}

/** Bucket (0..255) of version v when the highest is max: oldest dark, newest bright. */
function bucket(v, max) {
  if (!v) return 0;
  if (max <= 1) return 255;
  return 1 + Math.round(((v - 1) * 254) / (max - 1));
}

let versions = null;

export async function loadVersions(seq) {
  versions = null;
  const o = ctx.state.opened;
  const show = !!o.hasVersions;
  $('map-modes').hidden = !show;
  $('versions-panel').hidden = true;
  $('entries-card').hidden = layersOf(o.report)[0].format !== 'gow';
  if (!$('entries-card').hidden) {
    entries = { from: 0, stack: [], mode: 'all', value: 0 };
    $('entries-mode').value = 'all';
    $('entries-value').value = '';
    $('entries-value').disabled = true;
    loadEntries();
  }
  renderDeltaChooser(o);
  if (!show) {
    if (ctx.state.mapMode === 'versions') ctx.state.mapMode = 'allocation';
    return;
  }
  try {
    const v = await ctx.client.call({ type: 'versions', cellSize: ctx.state.cells ? ctx.state.cells.cellSize : 65536 });
    if (seq !== ctx.state.openSeq || !v) return;
    versions = v;
    versions.buckets = Uint8Array.from(v.cells, (x) => bucket(x, v.maxVersion));
    renderHistogram();
    if (ctx.state.mapMode === 'versions') ctx.renderMap();
    syncModeButtons();
  } catch (err) {
    if (seq !== ctx.state.openSeq) return;
    $('histogram').replaceChildren(el('p', { class: 'muted' }, `The block versions could not be read: ${err.message}`));
  }
}

function syncModeButtons() {
  const v = ctx.state.mapMode === 'versions';
  $('mode-allocation').setAttribute('aria-pressed', String(!v));
  $('mode-versions').setAttribute('aria-pressed', String(v));
  $('versions-panel').hidden = !v || !versions;
  $('legend').hidden = v && !!versions;
}

function setMapMode(mode) {
  ctx.state.mapMode = mode;
  syncModeButtons();
  ctx.renderMap();
}

/** Draw the main map by version, when that mode is on. Returns false if it is not.
 * `pick`, for a zoomed-in map of `n` cells: the whole-disk cell that cell i falls in. */
export function drawVersionsMap(canvas, layout, pick, n) {
  if (ctx.state.mapMode !== 'versions' || !versions) return false;
  const buckets = pick ? Uint8Array.from({ length: n }, (_, i) => versions.buckets[pick(i)] || 0) : versions.buckets;
  drawMap(canvas, buckets, layout, scale);
  syncModeButtons();
  return true;
}

export function versionAt(i) {
  return versions && ctx.state.mapMode === 'versions' ? versions.cells[i] : undefined;
}

function renderHistogram() {
  const v = versions;
  const hist = v.histogram.versions;
  const max = Math.max(...hist.map((h) => h.blocks), 1);
  const total = v.histogram.blocks;
  $('versions-scale').replaceChildren(
    el('span', { class: 'scale-end' }, el('span', { class: 'swatch', style: `background:${NEVER}` }), ' never written'),
    el('span', { class: 'scale-end' }, `session 1`),
    el('span', { class: 'scale-bar', style: `background:linear-gradient(to right, ${VIRIDIS.join(', ')})` }),
    el('span', { class: 'scale-end' }, `session ${v.maxVersion} (newest)`),
  );
  $('histogram').replaceChildren(
    ...hist.map((h) =>
      el('button', {
        type: 'button',
        class: 'hist-bar',
        dataset: { version: String(h.version), blocks: String(h.blocks) },
        title: `${h.version ? `Version ${h.version}` : 'Never written'}: ${h.blocks.toLocaleString('en-US')} blocks, ${human(h.bytes)} (${pct(h.blocks, total)}). Click to list them.`,
        'aria-label': `${h.version ? `version ${h.version}` : 'never written'}: ${h.blocks} blocks; list them`,
        onclick: () => {
          $('entries-mode').value = 'version';
          $('entries-value').disabled = false;
          $('entries-value').value = String(h.version);
          entriesSearch();
          $('entries-card').scrollIntoView({ behavior: 'smooth', block: 'start' });
        },
      },
      el('span', { class: 'hist-fill', style: `height:${Math.max(2, (100 * h.blocks) / max)}%;background:${scale(bucket(h.version, v.maxVersion))}` }),
      el('span', { class: 'hist-label' }, h.version ? String(h.version) : '–'),
      ),
    ),
  );
  $('histogram-caption').textContent = `Blocks per version (${hist.length} version${hist.length === 1 ? '' : 's'}, ${total.toLocaleString('en-US')} blocks of ${human(v.granularity)}). The version is the session that last changed a block; click a bar to list its blocks.`;
}

// ---------------------------------------------------------------------------------------
// Map-entry table (GOW), paged

const PAGE = 50;
let entries = null;

function entriesSearch() {
  const mode = $('entries-mode').value;
  const raw = $('entries-value').value.trim();
  let value = 0;
  if (!['all', 'allocated'].includes(mode)) {
    value = raw.toLowerCase().startsWith('0x') ? parseInt(raw, 16) : Number(raw.replace(/[,_\s]/g, ''));
    if (!Number.isFinite(value) || value < 0) {
      $('entries-status').textContent = `“${raw}” is not a number (decimal, or hex with 0x).`;
      return;
    }
  }
  entries = { from: 0, stack: [], mode, value };
  loadEntries();
}

function entriesPage(dir) {
  if (!entries) return;
  if (dir > 0 && entries.next != null) {
    entries.stack.push(entries.from);
    entries.from = entries.next;
  } else if (dir < 0 && entries.stack.length) {
    entries.from = entries.stack.pop();
  } else return;
  loadEntries();
}

async function loadEntries() {
  const seq = ctx.state.openSeq;
  const want = entries;
  $('entries-status').textContent = 'Reading the map…';
  try {
    let r = await ctx.client.call({ type: 'entries', from: want.from, limit: PAGE, mode: want.mode, value: want.value });
    // A filter that matched nothing in the blocks scanned: keep scanning (in steps, so
    // the worker stays responsive) until rows come or the map ends.
    while (!r.rows.length && r.next != null && seq === ctx.state.openSeq && want === entries) {
      want.from = r.next;
      r = await ctx.client.call({ type: 'entries', from: want.from, limit: PAGE, mode: want.mode, value: want.value });
    }
    if (seq !== ctx.state.openSeq || want !== entries) return;
    want.next = r.next;
    const tbody = $('entries').tBodies[0];
    tbody.replaceChildren(
      ...r.rows.map((e) =>
        el('tr', { dataset: { block: String(e.block) } },
          el('td', { class: 'num mono' }, e.block.toLocaleString('en-US')),
          el('td', { class: 'num mono' }, hex(e.guest)),
          el('td', { class: 'num mono' }, e.dataBlock == null ? '' : e.dataBlock.toLocaleString('en-US')),
          el('td', { class: 'num mono' }, e.fileOffset == null ? '' : `${e.fileOffset.toLocaleString('en-US')} (${hex(e.fileOffset)})`),
          el('td', { class: 'num' }, e.version == null ? '' : e.version ? String(e.version) : '0'),
          el('td', { class: e.state === 'unallocated' ? 'muted' : '' }, e.state === 'unallocated' ? 'never written (reads zeros)' : e.state),
        ),
      ),
    );
    const first = r.rows[0];
    const last = r.rows[r.rows.length - 1];
    $('entries-status').textContent = r.rows.length
      ? `Blocks ${first.block.toLocaleString('en-US')}–${last.block.toLocaleString('en-US')} of ${r.blocks.toLocaleString('en-US')}${want.mode === 'all' ? '' : ' (matching)'}${r.next == null ? ' · end of the map' : ''}`
      : 'No map entry matches.';
    $('entries-prev').disabled = !want.stack.length;
    $('entries-next').disabled = r.next == null;
  } catch (err) {
    if (seq === ctx.state.openSeq) $('entries-status').textContent = `The map could not be read: ${err.message}`;
  }
}

// ---------------------------------------------------------------------------------------
// Delta (two GOW3 images)

let delta = null;

function renderDeltaChooser(o) {
  const others = o.versioned || [];
  const box = $('delta');
  box.hidden = !o.hasVersions || !others.length;
  $('delta-result').hidden = true;
  delta = null;
  if (box.hidden) return;
  const names = [o.top, ...others];
  for (const [id, pick] of [['delta-master', others[0]], ['delta-local', o.top]]) {
    $(id).replaceChildren(...names.map((n) => el('option', { value: n, selected: n === pick }, n)));
    $(id).value = pick;
  }
}

async function runDelta() {
  const master = $('delta-master').value;
  const local = $('delta-local').value;
  const seq = ctx.state.openSeq;
  if (master === local) {
    $('delta-status').textContent = 'Choose two different images.';
    return;
  }
  $('delta-status').textContent = 'Comparing…';
  $('delta-result').hidden = true;
  try {
    const r = await ctx.client.call({ type: 'delta', master, local, max: 1 << 16 });
    if (seq !== ctx.state.openSeq) return;
    delta = r;
    $('delta-status').textContent = '';
    renderDelta();
  } catch (err) {
    if (seq !== ctx.state.openSeq) return;
    $('delta-status').textContent = capital(err.message);
  }
}

const DELTA_COLORS = ['#e9edf2', '#dc2626', '#2563eb', '#f59e0b'];

export function renderDelta() {
  if (!delta) return;
  const d = delta.delta;
  $('delta-result').hidden = false;
  delta.layout = layoutMap(delta.cellCount, $('delta-wrap').clientWidth || 800);
  drawMap($('delta-map'), delta.classes, delta.layout, (c) => DELTA_COLORS[c] || '#000');
  const mn = d['master-newer'];
  $('delta-summary').replaceChildren(
    el('strong', { dataset: { blocks: String(mn.blocks), bytes: String(mn.bytes) } },
      `${mn.blocks.toLocaleString('en-US')} block${mn.blocks === 1 ? '' : 's'} newer on the master: ${bytes(mn.bytes)}`),
    ` to fetch from ${delta.master} into ${delta.local}.`,
  );
  const row = (color, label, set) =>
    el('li', {}, el('span', { class: 'swatch', style: `background:${color}` }), el('span', { class: 'legend-label' }, label),
      el('span', { class: 'legend-bytes' }, `${set.blocks.toLocaleString('en-US')} blocks`), el('span', { class: 'legend-pct' }, human(set.bytes)));
  $('delta-legend').replaceChildren(
    row(DELTA_COLORS[1], 'Newer on the master', mn),
    row(DELTA_COLORS[2], 'Newer on the local copy', d['local-newer']),
    row(DELTA_COLORS[3], 'Allocated on one side only', { blocks: d['master-only'].blocks + d['local-only'].blocks, bytes: d['master-only'].bytes + d['local-only'].bytes }),
  );
  $('delta-scale').textContent = `1 cell = ${human(delta.cellSize)}`;
}

function onDeltaMove(ev) {
  if (!delta || !delta.layout) return;
  const r = $('delta-map').getBoundingClientRect();
  const i = cellAt(delta.layout, ev.clientX - r.left, ev.clientY - r.top, delta.cellCount);
  if (i < 0) return;
  const labels = ['same on both sides', 'newer on the master', 'newer on the local copy', 'allocated on one side only'];
  const start = i * delta.cellSize;
  $('delta-hover').textContent = `Guest ${hex(start)} +${human(delta.cellSize)}: ${labels[delta.classes[i]]}`;
}

function exportDelta() {
  if (!delta) return;
  const json = JSON.stringify({ master: delta.master, local: delta.local, ...delta.delta }, null, 2);
  const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
  const a = el('a', { href: url, download: `delta-${delta.master}-${delta.local}.json`, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
