// The page's side of the worker protocol (see worker.js): loads the wasm, starts the
// worker, matches answers to requests, and starts a fresh worker if the old one dies.

/**
 * Where the worker script and the wasm come from. The single-file build embeds both in
 * the page (the worker as text, the wasm as base64); the served site has them as files.
 */
function assets() {
  const workerText = document.getElementById('ds-worker');
  const wasmText = document.getElementById('ds-wasm');
  if (workerText && wasmText) {
    const workerUrl = URL.createObjectURL(new Blob([workerText.textContent], { type: 'text/javascript' }));
    const bin = atob(wasmText.textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    // The worker starts decoders from this text (decode-pool.js): on file:// it may not
    // start one from the page's blob: URL.
    return { workerUrl, decoderScript: { text: workerText.textContent }, module: WebAssembly.compile(bytes) };
  }
  const url = new URL('diskscope_bg.wasm', document.baseURI);
  const module = WebAssembly.compileStreaming
    ? WebAssembly.compileStreaming(fetch(url)).catch(() => fetch(url).then((r) => r.arrayBuffer()).then((b) => WebAssembly.compile(b)))
    : fetch(url).then((r) => r.arrayBuffer()).then((b) => WebAssembly.compile(b));
  const workerUrl = new URL('worker.js', document.baseURI).href;
  return { workerUrl, decoderScript: { url: workerUrl }, module };
}

/** What a request was doing, in words for an error message ("opening disk.qcow2"). */
export function doing(msg) {
  switch (msg.type) {
    case 'open':
      return `opening ${msg.top || msg.prefer?.[0] || msg.files?.[0]?.name || 'the files'}`;
    case 'cells':
    case 'hostmap':
    case 'versions':
      return 'drawing the map';
    case 'export':
    case 'export-write':
    case 'export-summary':
      return 'exporting';
    case 'sha256':
      return 'computing the SHA-256 of the raw image';
    case 'lookup':
    case 'entries':
      return 'looking up where guest bytes live';
    case 'bytes':
      return `reading bytes of ${msg.file}`;
    case 'report':
      return 'writing the report';
    default:
      return `answering '${msg.type}'`;
  }
}

export class WorkerClient {
  constructor({ onFatal } = {}) {
    this.onFatal = onFatal || (() => {});
    this.nextId = 1;
    this.pending = new Map();
    this.worker = null;
    this.assets = null;
  }

  /** Load the wasm and start the worker (once; later calls return the same promise). */
  start() {
    if (!this.ready) this.ready = this.spawn();
    return this.ready;
  }

  /** Compile the wasm here, on the main thread (async, so nothing blocks), start a worker
   * and hand it the compiled module. */
  async spawn() {
    if (!this.assets) this.assets = assets();
    const module = await this.assets.module;
    const worker = new Worker(this.assets.workerUrl); // classic: module workers from blob: fail on file://
    this.worker = worker;
    worker.onmessage = (ev) => this.receive(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.fail({ kind: 'init', message: `the worker failed: ${ev.message || 'it could not be loaded'}` });
    };
    worker.postMessage({ type: 'init', module, decoderScript: this.assets.decoderScript });
  }

  receive(msg) {
    if (msg.type === 'ready') return;
    if (msg.type === 'fatal') {
      this.fail(msg.error);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') {
      p.onProgress?.(msg);
      return;
    }
    this.pending.delete(msg.id);
    if (msg.type === 'result') p.resolve(msg.value);
    else {
      // A trap is followed by 'fatal', which should still say what trapped.
      if (msg.error?.kind === 'panic') this.trapped = p.doing;
      p.reject({ doing: p.doing, ...msg.error });
    }
  }

  /** The worker is unusable: reject what waits on it, start a new one, tell the page. */
  fail(error) {
    const old = this.worker;
    this.worker = null;
    if (old) old.terminate();
    // The message names what the worker was doing when it died (the oldest request).
    const first = this.pending.values().next().value;
    const what = first?.doing || this.trapped;
    this.trapped = null;
    if (what && !error.doing) error = { ...error, doing: what };
    for (const p of this.pending.values()) p.reject({ doing: p.doing, ...error });
    this.pending.clear();
    this.ready = this.spawn();
    this.ready.then(
      () => this.onFatal(error),
      (err) => this.onFatal({ kind: 'init', message: String((err && err.message) || err) }),
    );
  }

  /** Send a request; the promise has the request's `id` (for `cancel`). */
  call(msg, { onProgress } = {}) {
    const id = this.nextId++;
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.pending.set(id, { resolve, reject, onProgress, doing: doing(msg) });
    const send = () => {
      if (this.worker) this.worker.postMessage({ ...msg, id });
      else reject({ kind: 'init', message: 'the worker is not running' });
    };
    if (this.worker) send();
    else this.start().then(send, (err) => reject({ kind: 'init', message: String((err && err.message) || err) }));
    promise.id = id;
    return promise;
  }

  cancel(id) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.reject({ kind: 'superseded', message: 'cancelled' });
    if (this.worker) this.worker.postMessage({ type: 'cancel', id });
  }
}
