// diskscope worker: hosts the wasm core and the dropped files.
//
// A classic dedicated worker. The build puts wasm-bindgen's `--target no-modules` glue
// (which defines the global `wasm_bindgen`) in front of this file, so the same script
// works when served over http and from a Blob URL in the single-file page on file://.
//
// Protocol (every request carries an `id`; every answer echoes it):
//   page -> worker
//     {type: 'init', module}                       module: a compiled WebAssembly.Module
//     {type: 'open', id, files, prefer, top, asStored, snapshot}
//                                                   files: File[]; prefer: names; top: name?;
//                                                   asStored: don't replay a journal/log;
//                                                   snapshot: a qcow2 snapshot id or name
//     {type: 'cells', id, max, unit?}               the map picture, at most `max` cells, of `unit` bytes
//     {type: 'lookup', id, start, length, limit}    where guest bytes live
//     {type: 'export', id}                          build the raw image as a Blob
//     {type: 'hostmap', id, max}                    qcow2 host-file cluster usage (or null)
//     {type: 'versions', id, cellSize}              GOW3 block versions per map cell (or null)
//     {type: 'entries', id, from, limit, mode, value}  rows of the map-entry table
//     {type: 'delta', id, master, local, max}       blocks newer on a master than on a local copy
//     {type: 'cancel', id}                          stop the export `id`
//     {type: 'bytes', id, file, offset, length}     raw bytes of dropped file `file` (a name),
//                                                   at most BYTES_MAX; the hex view's slices
//     {type: 'hostdata', id, max}                  host ranges of guest data per layer (Float64Array)
//     {type: 'report', id}                          the whole inspection as `diskscope report --json` prints it
//   worker -> page
//     {type: 'ready'} | {type: 'fatal', error}      after init (fatal: the worker is unusable)
//     {type: 'result', id, value}                   the answer to request `id`
//     {type: 'error', id, error}                    error = {kind, message, offset?, file?}
//     {type: 'progress', id, done, total, parts}    export progress, in guest bytes
/* global wasm_bindgen, FileReaderSync */

'use strict';

let files = [];
let ready = null;
let poisoned = null; // set once the wasm instance trapped: it must not be used again
const cancelled = new Set();
const reader = new FileReaderSync();

// The core's only way to read bytes: called synchronously from Rust, fills `view` (a live
// view into wasm memory) with bytes of dropped file `index` from `offset`.
self.ds_read = (index, offset, view) => {
  const file = files[index];
  if (!file) throw new Error(`no dropped file #${index}`);
  const buf = reader.readAsArrayBuffer(file.slice(offset, offset + view.length));
  if (buf.byteLength !== view.length) {
    throw new Error(`${file.name}: got ${buf.byteLength} of ${view.length} bytes at offset ${offset}; did the file change?`);
  }
  view.set(new Uint8Array(buf));
};

function errorInfo(err) {
  if (err && typeof err === 'object' && typeof err.kind === 'string' && typeof err.message === 'string') return err;
  if (err instanceof WebAssembly.RuntimeError) {
    poisoned = `diskscope hit an internal error and has to restart (${err.message}). This is a bug; the browser console has details.`;
    return { kind: 'panic', message: poisoned };
  }
  if (err && err.name === 'NotReadableError') {
    return { kind: 'io', message: `The browser could not read the file (${err.message}). Was it moved, changed or deleted?` };
  }
  return { kind: 'error', message: String((err && err.message) || err) };
}

// ---------------------------------------------------------------------------------------
// Export: a Blob of references. Stored data becomes slices of the dropped files (the
// browser copies nothing), zero runs become whole power-of-two zero Blobs (never sliced:
// slicing an in-memory Blob copies it), computed runs small Blobs made from wasm reads.

const zeroBlobs = new Map();
const ZERO_MAX_LOG2 = 26; // 64 MiB

function zeroBlob(log2) {
  let b = zeroBlobs.get(log2);
  if (!b) {
    b = new Blob([new Uint8Array(2 ** log2)]);
    zeroBlobs.set(log2, b);
  }
  return b;
}

function pushZeros(parts, n) {
  const big = 2 ** ZERO_MAX_LOG2;
  while (n >= big) {
    parts.push(zeroBlob(ZERO_MAX_LOG2));
    n -= big;
  }
  for (let k = ZERO_MAX_LOG2 - 1; k >= 0 && n > 0; k--) {
    if (n >= 2 ** k) {
      parts.push(zeroBlob(k));
      n -= 2 ** k;
    }
  }
}

const COMPUTED_CHUNK = 4 << 20;
const yieldNow = () => new Promise((resolve) => setTimeout(resolve, 0));

async function exportRaw(id) {
  const plan = wasm_bindgen.plan();
  const count = plan.length / 4;
  let total = 0;
  for (let i = 0; i < count; i++) total += plan[4 * i + 3];
  const parts = [];
  const computed = [];
  let done = 0;
  let last = performance.now();
  const progress = (force) => {
    const now = performance.now();
    if (!force && now - last < 100) return false;
    last = now;
    self.postMessage({ type: 'progress', id, done, total, parts: count });
    return true;
  };
  for (let i = 0; i < count; i++) {
    const kind = plan[4 * i];
    const a = plan[4 * i + 1];
    const b = plan[4 * i + 2];
    const length = plan[4 * i + 3];
    if (kind === 0) {
      pushZeros(parts, length);
    } else if (kind === 1) {
      const file = files[a];
      const end = b + length;
      if (end <= file.size) {
        parts.push(file.slice(b, end));
      } else {
        // The stored run reaches past the end of its file: the rest reads as zeros.
        if (b < file.size) parts.push(file.slice(b, file.size));
        pushZeros(parts, end - Math.max(b, file.size));
      }
    } else {
      for (let off = 0; off < length; off += COMPUTED_CHUNK) {
        const n = Math.min(COMPUTED_CHUNK, length - off);
        const blob = new Blob([wasm_bindgen.read(a + off, n)]);
        computed.push({ blob, start: a + off, n, at: parts.length });
        parts.push(blob);
      }
    }
    done += length;
    if (progress(false)) {
      await yieldNow();
      if (cancelled.has(id)) return { cancelled: true };
    }
  }
  // A computed Blob can turn unreadable when the browser pages it out: check each one
  // and make it again if needed (shared/research/webspike.md, section 3b).
  for (const c of computed) {
    try {
      await c.blob.slice(0, 1).arrayBuffer();
    } catch {
      parts[c.at] = new Blob([wasm_bindgen.read(c.start, c.n)]);
    }
  }
  progress(true);
  const blob = new Blob(parts, { type: 'application/octet-stream' });
  if (blob.size !== total) {
    throw { kind: 'export', message: `the export came out ${blob.size} bytes long instead of ${total}` };
  }
  return { blob, size: total, parts: parts.length, planParts: count };
}

// ---------------------------------------------------------------------------------------
// Raw bytes for the hex view: a slice of a dropped file, read here so the page never
// touches file contents. Bounded so a bad request cannot pull a whole disk into memory.

const BYTES_MAX = 1 << 20;

function fileBytes({ file, offset, length }) {
  const f = files.find((x) => x.name === file);
  if (!f) throw { kind: 'usage', message: `${file} is not among the dropped files` };
  if (!(offset >= 0 && length >= 0 && length <= BYTES_MAX)) {
    throw { kind: 'usage', message: `bytes: offset ${offset} and length ${length} must be positive, the length at most ${BYTES_MAX}` };
  }
  const start = Math.min(offset, f.size);
  const end = Math.min(offset + length, f.size);
  const bytes = new Uint8Array(reader.readAsArrayBuffer(f.slice(start, end)));
  return { value: { file, offset: start, size: f.size, bytes }, transfer: [bytes.buffer] };
}

// ---------------------------------------------------------------------------------------

async function handle(msg) {
  switch (msg.type) {
    case 'open': {
      // The files of the session in use stay put until the new one has opened.
      const before = files;
      files = Array.from(msg.files);
      const t0 = performance.now();
      try {
        const value = wasm_bindgen.open(
          files.map((f) => f.name),
          Float64Array.from(files, (f) => f.size),
          msg.prefer || [],
          msg.top || undefined,
          !!msg.asStored,
          msg.snapshot || undefined,
        );
        value.openMs = performance.now() - t0;
        return { value };
      } catch (err) {
        files = before;
        throw err;
      }
    }
    case 'cells': {
      const t0 = performance.now();
      const value = wasm_bindgen.cells(msg.max, msg.unit || 0);
      value.ms = performance.now() - t0;
      return { value, transfer: [value.classes.buffer] };
    }
    case 'hostmap': {
      const value = wasm_bindgen.host_map(msg.max);
      return { value, transfer: value ? [value.classes.buffer] : [] };
    }
    case 'versions': {
      const value = wasm_bindgen.versions(msg.cellSize);
      return { value, transfer: value ? [value.cells.buffer] : [] };
    }
    case 'entries':
      return { value: wasm_bindgen.entries(msg.from || 0, msg.limit || 100, msg.mode || 'all', msg.value || 0) };
    case 'delta': {
      const value = wasm_bindgen.delta(msg.master, msg.local, msg.max);
      return { value, transfer: [value.classes.buffer] };
    }
    case 'bytes':
      return fileBytes(msg);
    case 'hostdata': {
      const value = wasm_bindgen.host_data(msg.max || 100000);
      return { value, transfer: [value.buffer] };
    }
    case 'report':
      return { value: wasm_bindgen.report_json() };
    case 'lookup':
      return { value: wasm_bindgen.lookup(msg.start, msg.length, msg.limit || 8) };
    case 'export': {
      const value = await exportRaw(msg.id);
      cancelled.delete(msg.id);
      return { value };
    }
    default:
      throw { kind: 'usage', message: `unknown request '${msg.type}'` };
  }
}

self.onmessage = async (event) => {
  const msg = event.data;
  if (msg.type === 'init') {
    ready = wasm_bindgen({ module_or_path: msg.module }).then(
      () => self.postMessage({ type: 'ready' }),
      (err) => self.postMessage({ type: 'fatal', error: { kind: 'init', message: `could not start the wasm module: ${err}` } }),
    );
    return;
  }
  if (msg.type === 'cancel') {
    cancelled.add(msg.id);
    return;
  }
  await ready;
  if (poisoned) {
    self.postMessage({ type: 'error', id: msg.id, error: { kind: 'panic', message: poisoned } });
    return;
  }
  try {
    const { value, transfer } = await handle(msg);
    self.postMessage({ type: 'result', id: msg.id, value }, transfer || []);
  } catch (err) {
    const error = errorInfo(err);
    self.postMessage({ type: 'error', id: msg.id, error });
    if (poisoned) self.postMessage({ type: 'fatal', error });
  }
};
