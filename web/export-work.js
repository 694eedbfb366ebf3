// The worker's side of "convert to raw" (see web/export.js for the page's side).
//
// Every path starts from the core's plan: stored runs (a dropped file and an offset),
// zero runs, and computed runs (decoded by the core: compressed clusters, replayed
// journals, files that are not dropped files of their own). Measured facts behind the
// choices are in shared/research/webspike.md:
//   - blob: a Blob of File slices (references, nothing copied) and whole power-of-two zero
//     Blobs (slicing an in-memory Blob copies it); computed runs as small Blobs, each
//     checked readable before the download is offered (Chromium can lose one it paged out);
//   - blob + OPFS scratch: computed runs beyond what the browser can hold are written to a
//     scratch file in the origin's private storage and referenced by slices of it;
//   - write: every byte that is not zero written at its position into a file handle (the
//     file the user picked with the File System Access API); zero runs are left unwritten.
//   - sha256: the raw stream hashed in the core, zero runs without reading anything.
// On every path, computed runs are decoded by a pool of workers when more than one is
// asked for (web/decode-pool.js), and placed in guest order as they come back.
/* global wasm_bindgen, FileReaderSync */

import { DecodePool, computedChunks, orderedReader } from './decode-pool.js';

const KIND_ZERO = 0;
const KIND_FILE = 1;

/** Bytes per computed Blob or positioned write: big enough that the ~1.5 ms per-read cost
 * of File slices is amortised, small enough that the memory in flight stays small. */
export const CHUNK = 16 << 20;
const COMPUTED_CHUNK = 4 << 20;
const ZERO_MAX_LOG2 = 26; // 64 MiB
const SCRATCH_PREFIX = 'diskscope-scratch-';

let cachedPlan = null;

/** Forget the plan (a new session was opened). */
export function forgetPlan() {
  cachedPlan = null;
}

/** Most parts a download Blob is built from. Blob assembly slows down past about 100k parts
 * (shared/research/webspike.md), so the plan of a very fragmented image (a stored run per
 * cluster, out of order) has its shortest runs read through the core instead, as decoded
 * chunks, until it fits: the bytes then count as decoded when the path is chosen. */
const MAX_PARTS = 50000;
const KIND_COMPUTED = 2;

/** Blob parts an entry of the plan becomes. */
function partsOf(kind, length) {
  if (kind === KIND_FILE) return 1;
  if (kind === KIND_ZERO) {
    const big = 2 ** ZERO_MAX_LOG2;
    let n = Math.floor(length / big);
    for (let r = length % big; r > 0; r &= r - 1) n++;
    return n;
  }
  return Math.ceil(length / COMPUTED_CHUNK);
}

/** The plan with every stored or zero run shorter than `below` merged, with its computed
 * neighbours, into runs the core reads (guest offset in the second slot). */
function fold(plan, count, below) {
  const out = [];
  let guest = 0;
  let run = -1; // guest start of the run being merged, or -1
  const flush = (end) => {
    if (run >= 0) out.push(KIND_COMPUTED, run, 0, end - run);
    run = -1;
  };
  for (let i = 0; i < count; i++) {
    const kind = plan[4 * i];
    const length = plan[4 * i + 3];
    if (kind !== KIND_FILE && kind !== KIND_ZERO) {
      if (run < 0) run = guest; // decoded already: joins the run
    } else if (length < below) {
      if (run < 0) run = guest;
    } else {
      flush(guest);
      out.push(kind, plan[4 * i + 1], plan[4 * i + 2], length);
    }
    guest += length;
  }
  flush(guest);
  return Float64Array.from(out);
}

function countParts(plan) {
  let n = 0;
  for (let i = 0; i < plan.length; i += 4) n += partsOf(plan[i], plan[i + 3]);
  return n;
}

function getPlan(maxParts = MAX_PARTS) {
  if (!cachedPlan || cachedPlan.maxParts !== maxParts) {
    let plan = wasm_bindgen.plan();
    let parts = countParts(plan);
    let foldedBelow = 0;
    for (let below = 64 << 10; parts > maxParts && below <= 2 ** 40; below *= 4) {
      plan = fold(plan, plan.length / 4, below);
      parts = countParts(plan);
      foldedBelow = below;
    }
    const count = plan.length / 4;
    let total = 0;
    let computed = 0;
    let fileParts = 0;
    let computedParts = 0;
    for (let i = 0; i < count; i++) {
      const kind = plan[4 * i];
      const length = plan[4 * i + 3];
      total += length;
      if (kind === KIND_FILE) fileParts++;
      else if (kind !== KIND_ZERO) {
        computed += length;
        computedParts += Math.ceil(length / COMPUTED_CHUNK);
      }
    }
    cachedPlan = { plan, count, total, computed, fileParts, computedParts, parts, foldedBelow, maxParts };
  }
  return cachedPlan;
}

/** What the page needs to choose a path before any work starts. */
export function summary(maxParts) {
  const { count, total, computed, fileParts, computedParts, parts, foldedBelow } = getPlan(maxParts);
  return { planParts: count, total, computed, fileParts, computedParts, parts, foldedBelow };
}

// ---------------------------------------------------------------------------------------
// Zero Blobs: whole ones only, of power-of-two sizes, made once.

const zeroBlobs = new Map();

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

// ---------------------------------------------------------------------------------------
// Progress and cancel

const yieldNow = () => new Promise((resolve) => setTimeout(resolve, 0));

class Job {
  constructor(id, total, phase, ctx) {
    Object.assign(this, { id, total, phase, ctx, done: 0, last: 0 });
  }

  /** Report progress at most every 100 ms; true when the job was cancelled. */
  async step(force = false) {
    const now = performance.now();
    if (!force && now - this.last < 100) return false;
    this.last = now;
    self.postMessage({ type: 'progress', id: this.id, phase: this.phase, done: this.done, total: this.total });
    await yieldNow(); // lets the worker see a 'cancel' message
    return this.ctx.cancelled.has(this.id);
  }
}

const CANCELLED = { cancelled: true };

// ---------------------------------------------------------------------------------------
// Decoders

/** The decoders of one export, reading the computed runs of its `plan` (of `count` runs) in
 * `size`-byte chunks: a pool of `msg.decoders` workers when that is more than one and there
 * are chunks enough to share, else this worker's own core. `close()` stops the pool (always
 * call it). */
async function decoders(msg, ctx, job, { plan, count }, size) {
  const asked = Math.floor(msg.decoders) || 1;
  let chunks = 0;
  for (const _ of computedChunks(plan, count, size)) if (++chunks >= asked) break;
  const want = Math.min(asked, chunks);
  const setup = want > 1 && typeof Worker === 'function' ? ctx.decoders() : null;
  let pool = null;
  if (setup) {
    self.postMessage({ type: 'progress', id: job.id, phase: 'decoders', done: 0, total: want });
    try {
      pool = await DecodePool.start({ count: want, ...setup, fail: msg.decoderFail });
    } catch (err) {
      // Where workers cannot start workers, this one decodes, as it did before the pool.
      console.warn(`diskscope: decoding in one worker: ${err.message}`);
    }
  }
  const here = (start, n) => wasm_bindgen.read(start, n);
  return {
    pool,
    count: pool ? pool.size : 1,
    reader: orderedReader(computedChunks(plan, count, size), pool, here),
    close: () => pool && pool.close(),
  };
}

/** The next computed chunk's bytes, which must be `n` long. */
async function nextChunk(dec, start, n) {
  const bytes = await dec.reader.next();
  if (bytes.length !== n) throw { kind: 'export', message: `${bytes.length} bytes were decoded at guest offset ${start} instead of ${n}` };
  return bytes;
}

// ---------------------------------------------------------------------------------------
// Reading stored runs for the paths that must move bytes (write, sha256).

const reader = new FileReaderSync();

function readFile(file, offset, length) {
  // A stored run may reach past the end of a sparse file: the rest reads as zeros.
  const end = Math.min(offset + length, file.size);
  const out = new Uint8Array(length);
  if (end > offset) out.set(new Uint8Array(reader.readAsArrayBuffer(file.slice(offset, end))));
  return out;
}

// ---------------------------------------------------------------------------------------
// Path: blob (optionally with an OPFS scratch file for computed runs)

async function openScratch(id) {
  const root = await navigator.storage.getDirectory();
  // Earlier exports' scratch files: their downloads are finished or abandoned by now.
  for await (const name of root.keys()) {
    if (name.startsWith(SCRATCH_PREFIX)) await root.removeEntry(name).catch(() => {});
  }
  const handle = await root.getFileHandle(`${SCRATCH_PREFIX}${Date.now()}-${id}.bin`, { create: true });
  const access = await handle.createSyncAccessHandle();
  return { root, handle, access, at: 0 };
}

/** Verify that a Blob part can be read (a cheap 1-byte read, about 1.5 ms). */
async function readable(blob) {
  try {
    if (blob.size) await blob.slice(blob.size - 1).arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

export async function exportBlob(msg, ctx) {
  const { id } = msg;
  const { plan, count, total, computed } = getPlan(msg.maxParts);
  const files = ctx.files();
  const useScratch = computed > (msg.memoryLimit ?? Infinity);
  if (useScratch && !msg.scratch) {
    throw { kind: 'too-large', message: `${computed} bytes must be decoded, more than the ${msg.memoryLimit} bytes this page can hold in memory` };
  }
  const job = new Job(id, total, useScratch ? 'scratch' : 'assemble', ctx);
  const parts = [];
  const computedParts = []; // {at, start, n} for verification
  let scratch = null;
  const scratchRefs = []; // {at, from, n}: parts that are slices of the scratch file
  let finished = false;
  let dec = null;
  try {
    dec = await decoders(msg, ctx, job, { plan, count }, COMPUTED_CHUNK);
    if (await job.step(true)) return CANCELLED;
    if (useScratch) scratch = await openScratch(id);
    for (let i = 0; i < count; i++) {
      const kind = plan[4 * i];
      const a = plan[4 * i + 1];
      const b = plan[4 * i + 2];
      const length = plan[4 * i + 3];
      if (kind === KIND_ZERO) {
        pushZeros(parts, length);
        job.done += length;
      } else if (kind === KIND_FILE) {
        const file = files[a];
        const end = b + length;
        if (end <= file.size) {
          parts.push(file.slice(b, end));
        } else {
          if (b < file.size) parts.push(file.slice(b, file.size));
          pushZeros(parts, end - Math.max(b, file.size));
        }
        job.done += length;
      } else {
        for (let off = 0; off < length; off += COMPUTED_CHUNK) {
          const n = Math.min(COMPUTED_CHUNK, length - off);
          const bytes = await nextChunk(dec, a + off, n);
          if (scratch) {
            const wrote = scratch.access.write(bytes, { at: scratch.at });
            if (wrote !== n) throw { kind: 'io', message: `the browser's storage took ${wrote} of ${n} bytes: is it full?` };
            scratchRefs.push({ at: parts.length, from: scratch.at, n });
            parts.push(null); // filled once the scratch file is closed
            scratch.at += n;
          } else {
            computedParts.push({ at: parts.length, start: a + off, n });
            parts.push(new Blob([bytes]));
          }
          job.done += n;
          if (await job.step()) return CANCELLED;
        }
      }
      if (await job.step()) return CANCELLED;
    }
    if (scratch) {
      scratch.access.flush();
      scratch.access.close();
      scratch.access = null;
      const file = await scratch.handle.getFile();
      if (file.size !== scratch.at) throw { kind: 'io', message: `the scratch file holds ${file.size} bytes instead of ${scratch.at}` };
      for (const r of scratchRefs) parts[r.at] = file.slice(r.from, r.from + r.n);
    }
    dec.close();
    // Every part readable before the download is offered: each computed Blob (one that
    // fails is made again), each scratch slice, and every dropped file still there.
    job.phase = 'verify';
    job.done = 0;
    const checks = computedParts.length + scratchRefs.length + files.length;
    job.total = checks;
    for (const c of computedParts) {
      if (msg.loseBlobs || !(await readable(parts[c.at]))) {
        parts[c.at] = new Blob([wasm_bindgen.read(c.start, c.n)]);
        if (msg.loseBlobs || !(await readable(parts[c.at]))) {
          // The page then tries the scratch file, where it has one (export.js).
          throw { kind: 'blob-lost', message: `the browser could not keep decoded bytes at guest offset ${c.start} in memory` };
        }
      }
      job.done++;
      if (await job.step()) return CANCELLED;
    }
    for (const r of scratchRefs) {
      if (!(await readable(parts[r.at]))) throw { kind: 'io', message: `the browser's storage lost decoded bytes (scratch offset ${r.from})` };
      job.done++;
      if (await job.step()) return CANCELLED;
    }
    for (const f of files) {
      if (!(await readable(f))) throw { kind: 'io', message: `${f.name} can no longer be read: was it moved, changed or deleted?` };
      job.done++;
    }
    await job.step(true);
    const blob = new Blob(parts, { type: 'application/octet-stream' });
    if (blob.size !== total) {
      throw { kind: 'export', message: `the export came out ${blob.size} bytes long instead of ${total}` };
    }
    finished = true;
    return {
      blob,
      size: total,
      parts: parts.length,
      planParts: count,
      path: scratch ? 'scratch' : computed ? 'memory' : 'references',
      computed,
      verified: checks,
      decoders: computed ? dec.count : 0,
    };
  } finally {
    dec?.close();
    if (scratch && scratch.access) scratch.access.close();
    // A cancelled or failed export leaves no scratch file behind.
    if (scratch && !finished) await scratch.root.removeEntry(scratch.handle.name).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// Path: write into a file handle (File System Access; an OPFS file takes the same calls)

export async function exportWrite(msg, ctx) {
  const { id, handle } = msg;
  const { plan, count, total, computed } = getPlan();
  const files = ctx.files();
  const job = new Job(id, total, 'write', ctx);
  // Writes go to a temporary copy that replaces the file only on close(): a cancelled or
  // failed export aborts it, and no partial file is left claiming to be the disk.
  const out = await handle.createWritable({ keepExistingData: false });
  let closed = false;
  let dec = null;
  try {
    dec = await decoders(msg, ctx, job, { plan, count }, CHUNK);
    await out.truncate(total); // the zero runs: never written
    let guest = 0;
    for (let i = 0; i < count; i++) {
      const kind = plan[4 * i];
      const a = plan[4 * i + 1];
      const b = plan[4 * i + 2];
      const length = plan[4 * i + 3];
      if (kind !== KIND_ZERO) {
        for (let off = 0; off < length; off += CHUNK) {
          const n = Math.min(CHUNK, length - off);
          const bytes = kind === KIND_FILE ? readFile(files[a], b + off, n) : await nextChunk(dec, a + off, n);
          await out.write({ type: 'write', position: guest + off, data: bytes });
          job.done += n;
          if (await job.step()) {
            await out.abort();
            closed = true;
            return CANCELLED;
          }
        }
      } else {
        job.done += length;
      }
      guest += length;
      if (await job.step()) {
        await out.abort();
        closed = true;
        return CANCELLED;
      }
    }
    dec.close();
    job.phase = 'close';
    await job.step(true);
    await out.close();
    closed = true;
    return { size: total, path: 'write', name: handle.name, computed, decoders: computed ? dec.count : 0 };
  } finally {
    dec?.close();
    if (!closed) await out.abort().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// SHA-256 of the raw stream

export async function sha256(msg, ctx) {
  const { id } = msg;
  const { plan, count, total, computed } = getPlan();
  const job = new Job(id, total, 'hash', ctx);
  const files = ctx.files();
  const dec = await decoders(msg, ctx, job, { plan, count }, CHUNK);
  try {
    wasm_bindgen.hash_begin();
    for (let i = 0; i < count; i++) {
      const kind = plan[4 * i];
      const a = plan[4 * i + 1];
      const b = plan[4 * i + 2];
      const length = plan[4 * i + 3];
      for (let off = 0; off < length; off += CHUNK) {
        const n = Math.min(CHUNK, length - off);
        if (kind === KIND_ZERO) wasm_bindgen.hash_zeros(n);
        else if (kind === KIND_FILE) wasm_bindgen.hash_update(readFile(files[a], b + off, n));
        else if (dec.pool) wasm_bindgen.hash_update(await nextChunk(dec, a + off, n));
        else wasm_bindgen.hash_guest(a + off, n); // decoded and hashed without leaving the wasm
        job.done += n;
        if (await job.step()) return CANCELLED;
      }
    }
    await job.step(true);
    return { sha256: wasm_bindgen.hash_end(), size: total, computed, decoders: computed ? dec.count : 0 };
  } finally {
    dec.close();
  }
}
