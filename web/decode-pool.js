// Decoders for an export's computed runs (compressed clusters, replayed journals): each is
// a worker running this same script with its own wasm instance, which opens the session
// the inspector has open (same files, top, view) and answers 'read' requests with guest
// bytes. The core's caches are single-threaded, so a chain is opened per decoder rather
// than shared, as the CLI's convert does per thread.
//
// The inspector starts them itself (nested workers): it holds the files and the session,
// and their bytes come straight to it, transferred, without crossing the page. On file://
// a worker may not start a worker from the page's blob: URL (its origin is opaque), so
// the single-file page hands over the script's text and a blob: URL is made here.
//
// The queue is bounded: at most DEPTH chunks per decoder are asked for ahead of the one
// being placed, so decoded bytes wait only until they are placed, in guest order.

const DEPTH = 2;

class Decoder {
  constructor(url, index, count) {
    Object.assign(this, { index, count, nextId: 1, pending: new Map(), dead: null, busy: 0 });
    this.ready = new Promise((resolve, reject) => {
      this.started = { resolve, reject };
    });
    this.ready.catch(() => {}); // a decoder that dies before it is used is reported by `call`
    this.worker = new Worker(url);
    this.worker.onmessage = (ev) => this.receive(ev.data);
    this.worker.onerror = (ev) => {
      // Handled here: unhandled, it would reach the page as the inspector's own failure.
      ev.preventDefault();
      this.die({ kind: 'decoder', message: `the worker failed: ${ev.message || 'it could not be loaded'}` });
    };
    this.worker.onmessageerror = () => this.die({ kind: 'decoder', message: 'a message from the worker could not be read' });
  }

  receive(msg) {
    if (msg.type === 'ready') return this.started.resolve();
    if (msg.type === 'fatal') return this.die(msg.error);
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    this.busy--;
    if (msg.type === 'result') p.resolve(msg.value);
    else p.reject(msg.error);
  }

  die(error) {
    if (this.dead) return;
    this.dead = error;
    this.worker.terminate();
    this.started.reject(error);
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  call(msg) {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    this.busy++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id });
    });
  }
}

export class DecodePool {
  /** Start `count` decoders over the session; resolves once every one has it open.
   * `fail` ({how, at}, tests only): the decoder asked for guest byte `at` fails as the
   * worker's 'fail' request does. */
  static async start({ count, module, script, session, fail }) {
    const url = script.url || URL.createObjectURL(new Blob([script.text], { type: 'text/javascript' }));
    const pool = new DecodePool(url, !script.url, fail);
    try {
      for (let i = 0; i < count; i++) pool.decoders.push(new Decoder(url, i, count));
      for (const d of pool.decoders) d.worker.postMessage({ type: 'init', module });
      await Promise.all(pool.decoders.map((d) => d.ready));
      await Promise.all(pool.decoders.map((d) => d.call({ type: 'open', ...session })));
      return pool;
    } catch (err) {
      pool.close();
      throw { kind: 'decoder', message: `a decoding worker could not start: ${(err && err.message) || err}` };
    }
  }

  constructor(url, ownUrl, fail) {
    Object.assign(this, { url, ownUrl, fail, decoders: [] });
  }

  get size() {
    return this.decoders.length;
  }

  /** Guest bytes [start, start+length) from the least busy decoder. */
  read(start, length) {
    let d = this.decoders[0];
    for (const x of this.decoders) if (x.busy < d.busy) d = x;
    const msg = { type: 'read', start, length };
    if (this.fail && this.fail.at >= start && this.fail.at < start + length) msg.fail = this.fail.how;
    return d.call(msg).catch((err) => {
      const e = err && typeof err === 'object' ? err : { message: String(err) };
      // A damaged image keeps the core's kind; a trap or a dead worker is the decoder's
      // (only the decoder is lost, not the page's worker, whatever a trap's text says).
      if (e.kind === 'panic') e.message = 'it hit an internal error (a bug; the browser console has details)';
      throw {
        ...e,
        kind: !e.kind || e.kind === 'panic' ? 'decoder' : e.kind,
        guest: start,
        message: `the guest bytes at offset ${start.toLocaleString('en-US')} could not be decoded (decoder ${d.index + 1} of ${d.count}): ${e.message}`,
      };
    });
  }

  /** Stop every decoder (an export ended, failed or was cancelled). */
  close() {
    for (const d of this.decoders) d.die({ kind: 'cancelled', message: 'the export ended' });
    if (this.ownUrl) URL.revokeObjectURL(this.url);
  }
}

/** The computed runs of a plan as [guestStart, length] chunks of at most `size` bytes, in
 * guest order. */
export function* computedChunks(plan, count, size) {
  for (let i = 0; i < count; i++) {
    const kind = plan[4 * i];
    if (kind === 0 || kind === 1) continue; // zero and stored runs
    const start = plan[4 * i + 1];
    const length = plan[4 * i + 3];
    for (let off = 0; off < length; off += size) yield [start + off, Math.min(size, length - off)];
  }
}

/** Guest bytes of `chunks` in order: `next()` gives the next chunk's bytes (or a promise of
 * them). With a pool, the chunks after it are already being decoded (DEPTH per decoder);
 * without one, the core in this worker decodes each when it is asked for, as before there
 * were decoders. */
export function orderedReader(chunks, pool, readHere) {
  if (!pool) {
    return {
      next() {
        const { value, done } = chunks.next();
        if (done) throw { kind: 'export', message: 'the plan ran out of computed chunks' };
        return readHere(value[0], value[1]);
      },
    };
  }
  const queue = [];
  const window = DEPTH * pool.size;
  let exhausted = false;
  const fill = () => {
    while (!exhausted && queue.length < window) {
      const { value, done } = chunks.next();
      if (done) {
        exhausted = true;
        break;
      }
      const p = pool.read(value[0], value[1]);
      p.catch(() => {}); // rejections are seen when the chunk's turn comes
      queue.push(p);
    }
  };
  return {
    next() {
      fill();
      if (!queue.length) return Promise.reject({ kind: 'export', message: 'the plan ran out of computed chunks' });
      const p = queue.shift();
      fill();
      return p;
    },
  };
}
