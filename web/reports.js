// Reports: the whole inspection as JSON (exactly what `diskscope report IMAGE` prints, made
// by the same core code in the worker) and as a printable, self-contained HTML page built
// from that JSON plus the map picture (a data: PNG). Nothing is fetched: the HTML holds
// its own CSS and no scripts.

import { $ } from './dom.js';
import { human, pct } from './format.js';

let ctx = null; // { state, client, showError }
let cached = null; // { seq, text } the JSON of the open view
let url = null;

export function init(c) {
  ctx = c;
  $('report-json').addEventListener('click', () => download('json'));
  $('report-html').addEventListener('click', () => download('html'));
}

export function reset() {
  cached = null;
  $('report-status').textContent = '';
}

async function inspection() {
  const seq = ctx.state.openSeq;
  if (cached && cached.seq === seq) return cached.text;
  const text = await ctx.client.call({ type: 'report' });
  if (seq === ctx.state.openSeq) cached = { seq, text };
  return text;
}

const stem = (name) => name.replace(/\.[^./\\]*$/, '') || name;

async function download(kind) {
  const o = ctx.state.opened;
  if (!o) return;
  const button = $(kind === 'json' ? 'report-json' : 'report-html');
  button.disabled = true;
  $('report-status').textContent = 'Preparing the report…';
  try {
    const text = await inspection();
    const snap = o.snapshot ? `@${o.snapshot}` : '';
    const name = `${stem(o.top)}${snap}.diskscope.${kind}`;
    const blob = kind === 'json'
      ? new Blob([text], { type: 'application/json' })
      : new Blob([html(JSON.parse(text), mapPicture())], { type: 'text/html' });
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    $('report-status').textContent = `${name} (${human(blob.size)}) is being saved by your browser.`;
  } catch (err) {
    $('report-status').textContent = '';
    ctx.showError(err, 'Could not make the report');
  } finally {
    button.disabled = false;
  }
}

/** The allocation map as drawn on the page, or null when there is none. */
function mapPicture() {
  const c = $('map');
  if (!c || !c.width || !c.height || $('map-wrap').hidden) return null;
  try {
    return c.toDataURL('image/png');
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// The printable page. Every string from the image (names, values, messages) is escaped:
// a header can hold anything.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
const num = (v) => (typeof v === 'number' ? v.toLocaleString('en-US') : esc(v));
const hexOf = (v) => (typeof v === 'number' ? `0x${v.toString(16)}` : esc(v));

function table(head, rows, cls = '') {
  if (!rows.length) return '<p class="muted">None listed.</p>';
  return `<table class="${cls}"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function mapTotals(map, layers) {
  const t = new Map();
  for (const e of map) {
    let k;
    if (e.invalid !== undefined) k = 'Invalid mapping';
    else if (e.missing) k = 'Needs a missing file';
    else if (e.compressed) k = 'Compressed';
    else if (e.data && e.depth > 0) k = `Data in ${layers[e.depth] || `backing ${e.depth}`} (backing ${e.depth})`;
    else if (e.data) k = `Data in ${layers[0]}`;
    else if (e.present) k = 'Zero clusters';
    else k = 'Unallocated (reads as zeros)';
    t.set(k, (t.get(k) || 0) + e.length);
  }
  return [...t.entries()];
}

function layerSection(l, i) {
  const facts = [
    ['Format', `${esc(l.format)} (${esc(l.variant)})`],
    ['Layout', l.layout === 'confirmed' ? 'confirmed from published source' : 'reconstructed from a description'],
    ['Virtual size', `${esc(human(l['virtual-size']))} (${num(l['virtual-size'])} bytes)`],
    ['File size', `${esc(human(l['file-size']))} (${num(l['file-size'])} bytes)`],
    ['Cluster size', num(l['cluster-size'])],
    ['Backing file', l['backing-filename'] ? esc(l['backing-filename']) : 'none'],
    ['Dirty', l['dirty-flag'] ? 'yes: not closed cleanly' : 'no'],
  ];
  const fields = (l['header-fields'] || []).map((f) => [
    `<span class="mono">${hexOf(f.offset)}</span>`, num(f.size), `<b>${esc(f.name)}</b>`, `<span class="mono">${esc(f.raw.length > 64 ? `${f.raw.slice(0, 64)}…` : f.raw)}</span>`, esc(f.value), esc(f.note),
  ]);
  const regions = (l.regions || []).slice(0, 200).map((r) => [esc(r.name), esc(r.kind), `<span class="mono">${hexOf(r.offset)}</span>`, esc(human(r.length))]);
  const more = (l.regions || []).length > 200 ? `<p class="muted">…and ${num(l.regions.length - 200)} more regions (see the JSON report).</p>` : '';
  return `<section class="layer"><h2>${i === 0 ? 'Image' : `Backing file ${i}`}: ${esc(l.filename)}</h2>
<dl class="facts">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>
<h3>Header fields</h3>${table(['Offset', 'Size', 'Field', 'Bytes', 'Value', 'Meaning'], fields, 'fields')}
<h3>Regions of the file</h3>${table(['Region', 'Kind', 'Offset', 'Length'], regions)}${more}</section>`;
}

export function html(r, picture) {
  const info = r.info;
  const { 'backing-chain': chain = [], ...top } = info;
  const layers = [top, ...chain];
  const names = layers.map((l) => l.filename);
  const findings = r.checks.flatMap((c) => (c.error ? [{ severity: 'corruption', file: c.filename, message: `the check could not finish: ${c.error}` }] : c.findings));
  const checkLines = r.checks.map((c) => {
    if (c.error) return `<li><b>${esc(c.filename)}</b>: the check could not finish: ${esc(c.error)}</li>`;
    const p = [];
    if (c.corruptions) p.push(`${num(c.corruptions)} corruptions`);
    if (c.leaks) p.push(`${num(c.leaks)} leaked clusters`);
    if (c['check-errors']) p.push(`${num(c['check-errors'])} check errors`);
    const clusters = c['total-clusters'] ? `; ${num(c['allocated-clusters'])} of ${num(c['total-clusters'])} clusters allocated` : '';
    return `<li><b>${esc(c.filename)}</b> (${esc(c.format)}): ${p.length ? p.join(', ') : 'no errors found'}${clusters}</li>`;
  });
  const total = top['virtual-size'];
  const totals = mapTotals(r.map, names);
  const chainBreak = info['chain-break'];
  const brk = chainBreak ? `<p class="warn">The chain is incomplete: ${esc(chainBreak.by)} names “${esc(chainBreak.name)}” (${esc(chainBreak.kind)}).</p>` : '';
  const sev = (s) => `<span class="sev sev-${esc(s)}">${esc(s)}</span>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>diskscope report: ${esc(top.filename)}</title>
<style>
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #111; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; } h2 { font-size: 1.2rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
.muted { color: #555; } .mono { font-family: "DejaVu Sans Mono", monospace; font-size: .9em; }
table { border-collapse: collapse; width: 100%; font-size: .86rem; } th, td { text-align: left; border-bottom: 1px solid #ddd; padding: .25rem .4rem; vertical-align: top; }
th { font-size: .75rem; text-transform: uppercase; color: #444; }
.fields td:nth-child(4) { word-break: break-all; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; } dt { color: #555; } dd { margin: 0; }
.sev { font-weight: 700; font-size: .75rem; padding: 0 .4rem; border-radius: 1rem; text-transform: capitalize; }
.sev-corruption { background: #fdecea; color: #8a1c12; } .sev-leak { background: #fff0e0; color: #7a2e08; } .sev-warning { background: #fff4dc; color: #6b4000; } .sev-info { background: #eef2f7; color: #333; }
.warn { background: #fff4dc; padding: .4rem .6rem; border-radius: 6px; }
.map { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
ol.chain li { margin: .1rem 0; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } tr, .map { break-inside: avoid; } section.layer { break-before: page; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; } }
</style></head><body>
<h1>diskscope report: ${esc(top.filename)}</h1>
<p class="muted">${esc(top.format)} · ${esc(top.variant)} · ${esc(human(total))} virtual · made ${esc(new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'))} by diskscope (read-only; the same data as the JSON report).</p>
<h2>Backing chain</h2>
<ol class="chain">${layers.map((l, i) => `<li><b>${esc(l.filename)}</b> (${esc(l.format)}, ${esc(human(l['virtual-size']))} virtual, ${esc(human(l['file-size']))} file)${i ? ` backing file ${i}` : ''}</li>`).join('')}</ol>${brk}
<h2>Findings</h2>
<ul>${checkLines.join('')}</ul>
${table(['Severity', 'File', 'Offset', 'Guest', 'Finding'], findings.map((f) => [sev(f.severity), esc(f.file), typeof f.offset === 'number' ? `<span class="mono">${num(f.offset)} (${hexOf(f.offset)})</span>` : '', typeof f.guest === 'number' ? `<span class="mono">${hexOf(f.guest)}</span>` : '', esc(f.message)]))}
<h2>Allocation map</h2>
${picture ? `<img class="map" alt="Allocation map of ${esc(top.filename)} as the page drew it" src="${esc(picture)}">` : '<p class="muted">No picture of the map (it could not be drawn).</p>'}
${r['map-error'] ? `<p class="warn">The map stops short: ${esc(r['map-error'])}</p>` : ''}
${table(['Guest bytes', 'Size', 'Share'], totals.map(([k, v]) => [esc(k), `${esc(human(v))} (${num(v)} bytes)`, esc(pct(v, total))]))}
<p class="muted">${num(r.map.length)} runs${r['map-runs-dropped'] ? ` listed, ${num(r['map-runs-dropped'])} more not listed` : ''}; the JSON report lists each one.</p>
${layers.map(layerSection).join('\n')}
</body></html>
`;
}
