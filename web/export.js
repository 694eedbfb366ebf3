// The page's side of "convert to raw": chooses the export path, names it on the page,
// shows progress (bytes, rate, time left) with one Cancel for whatever runs, and offers
// the result. The bytes are handled in the worker (web/export-work.js).
//
// Paths, chosen automatically:
//   - Download raw: a Blob of references to the dropped files and zero blocks; decoded
//     bytes as small in-memory Blobs up to MEMORY_LIMIT, beyond that in a scratch file in
//     the browser's private storage (OPFS, http(s) only). From file://, where there is no
//     OPFS, an image with more decoded bytes than that is refused before any work starts,
//     with the CLI command that does the job.
//   - Save to a file… (where the File System Access API exists): positioned writes into
//     the file the user picks; zero runs are left unwritten.
//   - SHA-256 of the raw image, on request.

import { human, rawName } from './format.js';
import { $, el } from './dom.js';

/** Decoded bytes kept as in-memory Blobs at most. Chromium holds about 2 GiB of Blob data
 * in memory and pages the rest to disk, where a Blob can turn unreadable
 * (shared/research/webspike.md 3b); half of that leaves room. `?blob-limit=BYTES` in the
 * page's address sets another (the tests use it to reach the bounded path with small images). */
const MEMORY_LIMIT = (() => {
  const v = Number(new URLSearchParams(location.search).get('blob-limit'));
  return Number.isFinite(v) && v > 0 ? v : 1 << 30;
})();

/** Most Blob parts; `?max-parts=N` sets another (the tests reach the folding with small
 * images). Unset, the worker's own bound applies. */
const MAX_PARTS = (() => {
  const v = Number(new URLSearchParams(location.search).get('max-parts'));
  return Number.isFinite(v) && v > 0 ? v : undefined;
})();

/** Workers that decode computed runs in parallel (web/decode-pool.js): one per core, at
 * most 4 (each holds its own copy of the wasm and the chain's caches); `?decoders=N` sets
 * another, 1 meaning the inspector's worker decodes them itself. */
const DECODERS = (() => {
  const v = Math.floor(Number(new URLSearchParams(location.search).get('decoders')));
  return Number.isFinite(v) && v > 0 ? Math.min(v, 16) : Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4));
})();

/** Tests only: `?decoder-fail=HOW@GUEST` makes the decoder asked for guest byte GUEST fail
 * ('trap' panics in its wasm, 'uncaught' throws outside any handler). */
const DECODER_FAIL = (() => {
  const m = /^(trap|uncaught)@(\d+)$/.exec(new URLSearchParams(location.search).get('decoder-fail') || '');
  return m ? { how: m[1], at: Number(m[2]) } : undefined;
})();

/** Tests only: `?lose-blobs` makes every in-memory decoded Blob fail its read-back, as
 * Chromium's can once it holds about 2 GiB of Blob data (webspike.md 3b). */
const LOSE_BLOBS = new URLSearchParams(location.search).has('lose-blobs');

let ctx = null; // {state, client, showError}
const job = { id: null };
let downloadUrl = null;
let summary = null; // the worker's plan summary for the open view, or null
let scratchOk = null; // a promise: whether OPFS can hold scratch files here

const PHASES = {
  assemble: 'Assembling',
  scratch: 'Decoding into browser storage',
  write: 'Writing',
  verify: 'Checking parts',
  hash: 'Hashing',
  close: 'Finishing the file',
};

const decodedBy = (n) => (n > 1 ? `${n} workers in parallel` : 'one worker');

export function init(c) {
  ctx = c;
  $('export-btn').addEventListener('click', startDownload);
  $('export-cancel').addEventListener('click', () => {
    cancel();
    $('export-status').textContent = 'Cancelled.';
  });
  const box = $('export-btn').parentElement;
  if (typeof window.showSaveFilePicker === 'function') {
    const save = el('button', { type: 'button', id: 'export-save', class: 'btn' }, 'Save to a file…');
    save.addEventListener('click', startSave);
    $('export-btn').after(save);
  }
  const sha = el('button', { type: 'button', id: 'export-sha', class: 'btn' }, 'SHA-256');
  sha.title = 'The SHA-256 of the raw image (reads every stored byte)';
  sha.addEventListener('click', startHash);
  box.append(sha, el('code', { id: 'export-sha-out', class: 'sha', hidden: true }));
  scratchOk = canScratch();
}

async function canScratch() {
  if (location.protocol === 'file:' || !navigator.storage || !navigator.storage.getDirectory) return false;
  try {
    await navigator.storage.getDirectory();
    return true;
  } catch {
    return false;
  }
}

const busyButtons = () => ['export-btn', 'export-save', 'export-sha'].map($).filter(Boolean);

/** Back to idle for the open view (or the refusal that applies to it). */
export function reset() {
  $('export-progress').hidden = true;
  for (const b of busyButtons()) b.disabled = false;
  $('export-status').textContent = '';
  $('export-status').classList.remove('refused');
  delete $('export-status').dataset.path;
  delete $('export-status').dataset.decoders;
  $('export-sha-out').hidden = true;
  $('export-sha-out').textContent = '';
  delete $('export-sha-out').dataset.sha256;
  summary = null;
  $('export-path').textContent = '';
  delete $('export-path').dataset.path;
  delete $('export-path').dataset.parts;
  const o = ctx.state.opened;
  const refusal = o && ctx.refusal(o);
  if (refusal) {
    for (const b of busyButtons()) b.disabled = true;
    $('export-status').textContent = refusal;
    $('export-status').classList.add('refused');
    return;
  }
  const brk = o && o.chainBreak;
  if (brk && brk.kind === 'missing') $('export-status').textContent = `Clusters this image takes from ${brk.name} cannot be exported until it is added.`;
}

/** Ask the worker how much of the disk must be decoded, and name the path on the page.
 * Called once the map is drawn (the plan walks the whole map). */
export async function loadSummary(seq) {
  const o = ctx.state.opened;
  if (!o || ctx.refusal(o)) return;
  try {
    const s = await ctx.client.call({ type: 'export-summary', maxParts: MAX_PARTS });
    if (seq !== ctx.state.openSeq) return;
    summary = s;
    await describePath();
  } catch {
    // The plan fails where the export would (a missing file, a corrupt mapping): the
    // export says why when it is tried.
  }
}

async function chosenPath() {
  if (!summary || summary.computed === 0) return 'references';
  if (summary.computed <= MEMORY_LIMIT) return 'memory';
  return (await scratchOk) ? 'scratch' : 'refused';
}

function cliCommand() {
  const o = ctx.state.opened;
  const q = (s) => (/^[\w./@+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const args = ['diskscope', 'convert'];
  if (o.asStored) args.push('--as-stored');
  if (o.snapshot) args.push('-l', q(o.snapshot));
  args.push(q(o.top), q(downloadName()));
  return args.join(' ');
}

async function describePath() {
  const path = await chosenPath();
  const p = $('export-path');
  p.dataset.path = path;
  if (summary) p.dataset.parts = String(summary.parts);
  const refs = 'Download raw builds the raw image from references to your files and to zero blocks, so nothing is copied until the browser saves it';
  const dec = summary ? human(summary.computed) : '';
  const workers = ` It is decoded by ${decodedBy(DECODERS)}.`;
  const texts = {
    references: `${refs}.`,
    memory: `${refs}; the ${dec} that must be decoded (compressed or journalled data) is held in memory, each piece checked readable before the download starts.${workers}`,
    scratch: `${refs}; the ${dec} that must be decoded is more than the browser can hold in memory (${human(MEMORY_LIMIT)}), so it is first written to a scratch file in the browser's private storage (OPFS).${workers}`,
  };
  const save = $('export-save') ? ' Save to a file… writes straight into a file you pick, leaving zero runs unwritten.' : '';
  if (path !== 'refused') {
    p.textContent = texts[path] + save;
    return;
  }
  $('export-btn').disabled = true;
  p.replaceChildren(
    `${dec} of this disk must be decoded (compressed or journalled data): more than a page opened from a file can hold in memory (${human(MEMORY_LIMIT)}), and such a page has no private storage to put it in. `,
    'Convert it on the command line: ',
    el('code', { id: 'export-cli' }, cliCommand()),
    ', or serve diskscope over http (npm start) and download it from there.',
    save,
  );
}

function downloadName() {
  const o = ctx.state.opened;
  const snap = o.snapshot && (o.snapshots || []).find((s) => s.id === o.snapshot);
  return snap ? rawName(`${o.top.replace(/\.[^./\\]*$/, '')}@${snap.name}.x`) : rawName(o.top);
}

export function revoke() {
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = null;
}

/** Stop whatever export job runs (the worker drops its partial output). */
export function cancel() {
  if (job.id !== null) {
    ctx.client.cancel(job.id);
    job.id = null;
    idle();
  }
}

/** No job running: buttons back, unless the download is refused for this image. */
function idle() {
  $('export-progress').hidden = true;
  for (const b of busyButtons()) b.disabled = false;
  if ($('export-path').dataset.path === 'refused') $('export-btn').disabled = true;
}

// ---------------------------------------------------------------------------------------
// Progress

function rate(bytes, ms) {
  return ms > 0 ? (bytes * 1000) / ms : 0;
}

function secondsText(s) {
  if (!Number.isFinite(s)) return '';
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function progressHandler(t0) {
  let phase = null;
  let phaseStart = t0;
  return (m) => {
    const now = performance.now();
    if (m.phase !== phase) {
      phase = m.phase;
      phaseStart = now;
    }
    if (m.phase === 'decoders') {
      $('export-text').textContent = `Starting ${m.total} decoding workers…`;
      return;
    }
    $('export-bar').value = m.total ? m.done / m.total : 0;
    const name = PHASES[m.phase] || 'Working';
    if (m.phase === 'verify') {
      $('export-text').textContent = `${name}: ${m.done} of ${m.total}`;
      return;
    }
    const r = rate(m.done, now - phaseStart);
    const left = r > 0 ? (m.total - m.done) / r : Infinity;
    const speed = r > 0 ? ` · ${human(Math.round(r))}/s` : '';
    const eta = r > 0 && m.done < m.total ? ` · about ${secondsText(left)} left` : '';
    $('export-text').textContent = `${name} ${human(m.done)} of ${human(m.total)}${speed}${eta}`;
  };
}

/** Run one job in the worker with the progress bar up; null if it was cancelled. */
/** `fallback(err)`: whether the caller will try another way after this error (nothing is
 * shown then, and the error is returned as `{ failed: err }`). */
async function run(msg, fallback = () => false) {
  const o = ctx.state.opened;
  if (!o || job.id !== null || ctx.refusal(o)) return null;
  for (const b of busyButtons()) b.disabled = true;
  $('export-progress').hidden = false;
  $('export-bar').value = 0;
  $('export-text').textContent = 'Planning…';
  $('export-status').textContent = '';
  const t0 = performance.now();
  let id;
  try {
    const p = ctx.client.call(msg, { onProgress: progressHandler(t0) });
    id = p.id;
    job.id = id;
    const r = await p;
    if (job.id !== id) return null; // cancelled meanwhile
    job.id = null;
    idle();
    if (r.cancelled) {
      $('export-status').textContent = 'Cancelled.';
      return null;
    }
    r.ms = performance.now() - t0;
    return r;
  } catch (err) {
    if (job.id !== id) return null; // cancelled meanwhile
    job.id = null;
    idle();
    if (err && err.kind === 'superseded') return null;
    if (fallback(err)) return { failed: err };
    $('export-status').textContent = '';
    ctx.showError(err, 'Could not convert');
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// The three actions

async function startDownload() {
  if (!summary) await loadSummary(ctx.state.openSeq);
  const path = await chosenPath();
  if (path === 'refused') return;
  const name = downloadName();
  // The last download's Blob goes first: decoded bytes of earlier exports still held are
  // what pushes Chromium past the Blob memory it keeps readable.
  revoke();
  const scratch = await scratchOk;
  const msg = { type: 'export', memoryLimit: MEMORY_LIMIT, maxParts: MAX_PARTS, scratch, decoders: DECODERS, decoderFail: DECODER_FAIL, loseBlobs: LOSE_BLOBS };
  let r = await run(msg, (err) => scratch && err && err.kind === 'blob-lost');
  let lost = '';
  if (r && r.failed) {
    // The browser dropped decoded bytes it held in memory: decode again into the scratch file.
    lost = ' The browser could not keep the decoded bytes in memory, so they went to its private storage instead.';
    r = await run({ ...msg, memoryLimit: 0 });
  }
  if (!r) return;
  downloadUrl = URL.createObjectURL(r.blob);
  const by = ` by ${decodedBy(r.decoders)}`;
  const how = { references: 'from references to your files', memory: `with ${human(r.computed)} decoded in memory${by}`, scratch: `with ${human(r.computed)} decoded into browser storage${by}` }[r.path];
  const a = el('a', { href: downloadUrl, download: name, class: 'download-link' }, `Save ${name} again`);
  $('export-status').replaceChildren(`${name} (${human(r.size)}, ${how}; ${r.verified} parts checked) is being saved by your browser.${lost} `, a);
  $('export-status').dataset.ms = r.ms.toFixed(1);
  $('export-status').dataset.decoders = String(r.decoders);
  $('export-status').dataset.path = r.path;
  const click = el('a', { href: downloadUrl, download: name, hidden: true });
  document.body.append(click);
  click.click();
  click.remove();
}

async function startSave() {
  const name = downloadName();
  let handle;
  try {
    handle = await window.showSaveFilePicker({ suggestedName: name });
  } catch (err) {
    if (err && err.name === 'AbortError') return; // the user closed the picker
    ctx.showError({ kind: 'error', message: String((err && err.message) || err) }, 'Could not open the file to save to');
    return;
  }
  const r = await run({ type: 'export-write', handle, decoders: DECODERS, decoderFail: DECODER_FAIL });
  if (!r) return;
  const decoded = r.computed ? `, ${human(r.computed)} decoded by ${decodedBy(r.decoders)}` : '';
  $('export-status').textContent = `Saved ${r.name} (${human(r.size)}): written directly, zero runs left unwritten${decoded}, in ${secondsText(r.ms / 1000)}.`;
  $('export-status').dataset.ms = r.ms.toFixed(1);
  $('export-status').dataset.decoders = String(r.decoders);
  $('export-status').dataset.path = 'write';
}

async function startHash() {
  const r = await run({ type: 'sha256', decoders: DECODERS, decoderFail: DECODER_FAIL });
  if (!r) return;
  const out = $('export-sha-out');
  out.hidden = false;
  out.textContent = `SHA-256 ${r.sha256}`;
  out.title = r.computed ? `${human(r.computed)} decoded by ${decodedBy(r.decoders)}` : '';
  out.dataset.decoders = String(r.decoders);
  out.dataset.sha256 = r.sha256;
}
