// diskscope worker: hosts the wasm core and the dropped files.
//
// A classic dedicated worker. The build puts wasm-bindgen's `--target no-modules` glue
// (which defines the global `wasm_bindgen`) in front of this file, so the same script
// works when served over http and from a Blob URL in the single-file page on file://.
//
// Protocol (every request carries an `id`; every answer echoes it):
//   page -> worker
//     {type: 'init', module, decoderScript?}       module: a compiled WebAssembly.Module;
//                                                   decoderScript: {url} or {text} of this
//                                                   script, to start decoders (decode-pool.js)
//     {type: 'open', id, files, prefer, top, asStored, snapshot}
//                                                   files: File[]; prefer: names; top: name?;
//                                                   asStored: don't replay a journal/log;
//                                                   snapshot: a qcow2 snapshot id or name
//     {type: 'cells', id, max, unit?, start?, length?, layer?}  the map picture, at most `max` cells, of `unit` bytes;
//                                                   with start/length only that guest window (zoomed in)
//     {type: 'lookup', id, start, length, limit, layer?}  where guest bytes live
//                                                   (cells and lookup: `layer` k maps that layer alone)
//     {type: 'export-summary', id, maxParts?}       the plan's size: total, computed bytes, parts
//     {type: 'export', id, memoryLimit, scratch, decoders, decoderFail?}
//                                                   build the raw image as a Blob (export-work.js)
//     {type: 'export-write', id, handle, decoders}  write it into a FileSystemFileHandle
//     {type: 'sha256', id, decoders}                SHA-256 of the raw image
//                                                   (decoders: workers decoding computed runs;
//                                                   decoderFail {how, at}: tests only)
//     {type: 'hostmap', id, max}                    qcow2 host-file cluster usage (or null)
//     {type: 'versions', id, cellSize}              GOW3 block versions per map cell (or null)
//     {type: 'entries', id, from, limit, mode, value}  rows of the map-entry table
//     {type: 'delta', id, master, local, max}       blocks newer on a master than on a local copy
//     {type: 'cancel', id}                          stop the export `id`
//     {type: 'bytes', id, file, offset, length}     raw bytes of dropped file `file` (a name),
//                                                   at most BYTES_MAX; the hex view's slices
//     {type: 'hostdata', id, max}                  host ranges of guest data per layer (Float64Array)
//     {type: 'report', id}                          the whole inspection as `diskscope report --json` prints it
//     {type: 'fields', id, guest, depth, layer?}    the metadata mapping `guest` in layer `depth` (entry, bitmap bit, version)
//     {type: 'demos', id}                           the demo samples: [{name, title, about}]
//     {type: 'demo', id, name}                      a demo's files, written by the core: {name, title, about, files: File[]}
//     {type: 'fail', id, how}                       tests only: 'trap' panics in the wasm, 'uncaught' throws outside any handler
//     {type: 'read', id, start, length, fail?}      guest bytes (a decoder's job; `fail`: as 'fail', tests only)
//   worker -> page
//     {type: 'ready'} | {type: 'fatal', error}      after init (fatal: the worker is unusable)
//     {type: 'result', id, value}                   the answer to request `id`
//     {type: 'error', id, error}                    error = {kind, message, offset?, file?}
//     {type: 'progress', id, phase, done, total}    export progress, in guest bytes (phase
//                                                   'verify': in parts checked)
/* global wasm_bindgen, FileReaderSync */

import * as exporter from './export-work.js';

let files = [];
let session = null; // the open request that made the session, for decoders to repeat
let decoderSetup = null; // {module, script}: what a decoder is started with
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

const exportContext = {
  files: () => files,
  cancelled,
  decoders: () => decoderSetup && session && { ...decoderSetup, session },
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

// For the browser tests of recovery: a real trap in the wasm, or an error no handler
// catches (which reaches whoever started this worker as its onerror).
function failForTest(how) {
  if (how === 'uncaught') {
    setTimeout(() => {
      throw new Error('an uncaught failure the test asked for');
    });
    return new Promise(() => {});
  }
  wasm_bindgen.fail_for_test();
  return { value: null };
}

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
        exporter.forgetPlan();
        // The top as chosen, so that a decoder opening the same files picks the same one.
        session = { files, prefer: [], top: value.top, asStored: !!msg.asStored, snapshot: msg.snapshot || undefined };
        return { value };
      } catch (err) {
        files = before;
        throw err;
      }
    }
    case 'cells': {
      const t0 = performance.now();
      const value = wasm_bindgen.cells(msg.max, msg.unit || 0, msg.start ?? undefined, msg.length ?? undefined, msg.layer ?? undefined);
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
    case 'fields':
      return { value: wasm_bindgen.cluster_fields(msg.guest, msg.depth || 0, msg.layer ?? undefined) };
    case 'demos':
      return { value: wasm_bindgen.demos() };
    case 'demo': {
      const value = wasm_bindgen.demo(String(msg.name || ''));
      value.files = value.files.map((f) => new File([f.bytes], f.name, { type: 'application/octet-stream', lastModified: 0 }));
      return { value };
    }
    case 'lookup':
      return { value: wasm_bindgen.lookup(msg.start, msg.length, msg.limit || 8, msg.layer ?? undefined) };
    case 'export-summary':
      return { value: exporter.summary(msg.maxParts) };
    case 'export':
    case 'export-write':
    case 'sha256': {
      const run = { export: exporter.exportBlob, 'export-write': exporter.exportWrite, sha256: exporter.sha256 }[msg.type];
      try {
        return { value: await run(msg, exportContext) };
      } finally {
        cancelled.delete(msg.id);
      }
    }
    case 'read': {
      if (msg.fail) return failForTest(msg.fail);
      const value = wasm_bindgen.read(msg.start, msg.length);
      return { value, transfer: [value.buffer] };
    }
    case 'fail':
      return failForTest(msg.how);
    default:
      throw { kind: 'usage', message: `unknown request '${msg.type}'` };
  }
}

self.onmessage = async (event) => {
  const msg = event.data;
  if (msg.type === 'init') {
    if (msg.decoderScript) decoderSetup = { module: msg.module, script: msg.decoderScript };
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
