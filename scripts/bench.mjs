// A benchmark, not a test (`npm run bench`): diskscope against qemu-img, and the browser
// export paths, on images made here with qemu-img in a temporary folder (removed after).
//
//   CLI convert to raw (median of 3 runs each, outputs compared):
//     2 GiB QED and qcow2, half allocated (random data, every other MiB);
//     2 GiB qcow2 with 1 GiB of compressible text, zlib- and zstd-compressed;
//     256 GiB sparse QED (64 KiB written in every GiB).
//   CLI map --json of the 256 GiB QED against qemu-img map.
//   Browser, headless Chromium:
//     open + map of the 256 GiB sparse QED (served and offline single file, median of 5);
//     export of an 8 GiB image on each path (references; decoded bytes in memory; decoded
//     bytes in an OPFS scratch file; positioned writes into a file handle), with the
//     throughput and the peak PSS of all the browser's processes (sampled every 250 ms),
//     and the references path at 2 GiB too, to show that memory does not grow with size;
//     the decoded paths twice: by one worker (?decoders=1) and by the default pool of
//     decoding workers (web/decode-pool.js).
//
// `npm run bench -- --write` also puts the tables into BENCHMARKS.md.
// `npm run bench -- --pool` runs only the decoded-path rows (a few minutes), to measure the
// pool of decoders; it writes nothing.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, statSync, existsSync, openSync, writeSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target');
const diskscope = join(targetDir, 'release', 'diskscope');
const RUNS = 3;
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const log = (s) => process.stderr.write(`${s}\n`);

function run(cmd, args, { cwd, quiet = true } = {}) {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'pipe'], maxBuffer: 64 * MiB });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}\n${r.stderr}`);
  return r;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function timeIt(label, cmd, args, { before } = {}) {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    if (before) before();
    const t0 = process.hrtime.bigint();
    run(cmd, args);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  log(`  ${label}: ${times.map((t) => t.toFixed(3)).join(' s, ')} s`);
  return median(times);
}

/** Remove the last run's output and flush dirty pages, so no run pays for another's writeback. */
function fresh(file) {
  rmSync(file, { force: true });
  spawnSync('sync');
}

const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** A sparse raw file of `size` bytes with `fill(buf)` written at each offset in `offsets`. */
function sparseRaw(path, size, offsets, chunk) {
  const fd = openSync(path, 'w');
  try {
    for (const off of offsets) writeSync(fd, chunk, 0, chunk.length, off);
    spawnSync('truncate', ['-s', String(size), path]);
  } finally {
    closeSync(fd);
  }
}

/** Text that compresses about as well as logs or source code: random words and numbers. */
function textChunk(bytes) {
  const words = 'the of and disk image cluster table sector block data zero read write map guest host offset file header check chain backing raw qcow2 qed vmdk compressed version'.split(' ');
  const out = Buffer.alloc(bytes);
  let at = 0;
  let x = 12345;
  while (at < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = x % 7 === 0 ? `${x % 100000} ` : `${words[x % words.length]} `;
    at += out.write(w, at, 'latin1');
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// CLI

function convertRow(rows, dir, label, img, { compareWith = 'cmp' } = {}) {
  const ours = join(dir, 'ours.raw');
  const theirs = join(dir, 'qemu.raw');
  const image = join(dir, img);
  log(`${label}: ${(statSync(image).size / MiB).toFixed(0)} MiB on disk (load ${load()})`);
  const tOurs = timeIt('diskscope convert', diskscope, ['convert', image, ours], { before: () => fresh(ours) });
  const tQemu = timeIt('qemu-img convert -O raw', 'qemu-img', ['convert', '-O', 'raw', image, theirs], { before: () => fresh(theirs) });
  const same =
    compareWith === 'cmp'
      ? spawnSync('cmp', ['-s', ours, theirs]).status === 0
      : spawnSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', ours, theirs]).status === 0;
  rows.push([label, tOurs, tQemu, same ? 'outputs identical' : 'OUTPUTS DIFFER', load()]);
  rmSync(ours, { force: true });
  rmSync(theirs, { force: true });
}

/** Seconds dd takes to write 1 GiB into a new file, measured by cliBench. */
let writeFloor = null;

function cliBench(dir, rows) {
  const random = randomBytes(MiB);
  const half = [];
  for (let off = 0; off < 2 * GiB; off += 2 * MiB) half.push(off);
  log('making 2 GiB images, every other MiB written');
  sparseRaw(join(dir, 'half.raw'), 2 * GiB, half, random);
  run('qemu-img', ['convert', '-q', '-O', 'qed', 'half.raw', 'half.qed'], { cwd: dir });
  run('qemu-img', ['convert', '-q', '-O', 'qcow2', 'half.raw', 'half.qcow2'], { cwd: dir });
  rmSync(join(dir, 'half.raw'));
  convertRow(rows, dir, 'convert 2 GiB QED (1 GiB random data)', 'half.qed');
  rmSync(join(dir, 'half.qed'));
  convertRow(rows, dir, 'convert 2 GiB qcow2 (1 GiB random data)', 'half.qcow2');
  rmSync(join(dir, 'half.qcow2'));
  // What writing the 1 GiB of output alone costs here (dd from /dev/zero into a new file's
  // page cache): both tools above spend most of their time on exactly this.
  const floor = join(dir, 'floor.raw');
  const tFloor = timeIt('dd 1 GiB into a new file', 'dd', ['if=/dev/zero', `of=${floor}`, 'bs=1M', 'count=1024', 'status=none'], { before: () => fresh(floor) });
  rmSync(floor, { force: true });
  writeFloor = tFloor;

  log('making 2 GiB compressed qcow2 images (1 GiB of text), zlib and zstd');
  sparseRaw(join(dir, 'text.raw'), 2 * GiB, half, textChunk(MiB));
  run('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', '-o', 'compression_type=zlib', 'text.raw', 'zlib.qcow2'], { cwd: dir });
  run('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'text.raw', 'zstd.qcow2'], { cwd: dir });
  rmSync(join(dir, 'text.raw'));
  convertRow(rows, dir, 'convert 2 GiB qcow2, 1 GiB zlib-compressed', 'zlib.qcow2');
  rmSync(join(dir, 'zlib.qcow2'));
  convertRow(rows, dir, 'convert 2 GiB qcow2, 1 GiB zstd-compressed', 'zstd.qcow2');
  rmSync(join(dir, 'zstd.qcow2'));

  log('making a 256 GiB sparse QED image (64 KiB written every GiB)');
  run('qemu-img', ['create', '-q', '-f', 'qed', 'big.qed', String(256 * GiB)], { cwd: dir });
  const cmds = [];
  for (let g = 0; g < 256; g++) cmds.push('-c', `write -q -P ${1 + (g % 255)} ${g * GiB + (g % 7) * 64 * KiB} 65536`);
  run('qemu-io', ['-f', 'qed', ...cmds, 'big.qed'], { cwd: dir });
  convertRow(rows, dir, 'convert 256 GiB sparse QED (16 MiB data)', 'big.qed', { compareWith: 'qemu-img compare' });
  const big = join(dir, 'big.qed');
  const mOurs = timeIt('diskscope map --json', diskscope, ['map', big, '--json']);
  const mQemu = timeIt('qemu-img map --output=json', 'qemu-img', ['map', '--output=json', big]);
  const a = spawnSync(diskscope, ['map', big, '--json'], { maxBuffer: 256 * MiB }).stdout;
  const b = spawnSync('qemu-img', ['map', '--output=json', big], { maxBuffer: 256 * MiB }).stdout;
  let note;
  try {
    note = JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b)) ? 'maps identical' : 'MAPS DIFFER';
  } catch {
    note = 'map output is not JSON';
  }
  rows.push(['map --json of the 256 GiB sparse QED', mOurs, mQemu, note, load()]);
  return big;
}

// ---------------------------------------------------------------------------------------
// Browser

/** PSS (bytes) of the browser process and all its descendants. */
function treePss(pid) {
  const children = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'));
      if (m) total += Number(m[1]) * KiB;
    } catch {
      // gone meanwhile
    }
    stack.push(...(children.get(p) || []));
  }
  return total;
}

function sampler(pid) {
  let peak = 0;
  const base = treePss(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, treePss(pid));
  }, 250);
  return { base, stop: () => (clearInterval(timer), Math.max(peak, treePss(pid))) };
}

async function withBrowser(fn) {
  const { chromium } = await import('playwright-core');
  const b = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

/** Median ms from picking `file` in the page to its map legend drawn (page already loaded). */
async function openMap(b, url, file) {
  const times = [];
  const inPage = [];
  const inWorker = [];
  for (let i = 0; i < 5; i++) {
    // A fresh page each time (a second pick of the same file reopens nothing), left to
    // start its worker first, as a person takes a moment to pick a file.
    const p = await b.newPage();
    await p.goto(url);
    await p.waitForSelector('#file-input', { state: 'attached' });
    await p.waitForTimeout(1000);
    // In the page: from the input's change event (the file dialog closing) to the map drawn.
    // The pick-to-seen figure also holds Playwright's own round trips.
    await p.evaluate(() => {
      const input = document.querySelector('#file-input');
      input.addEventListener('change', () => { window.__changed = performance.now(); }, { capture: true });
      new MutationObserver(() => {
        if (document.querySelector('#view').dataset.ready === 'true' && !window.__drawn) window.__drawn = performance.now();
      }).observe(document.querySelector('#view'), { attributes: true, attributeFilter: ['data-ready'] });
    });
    const t0 = Date.now();
    await p.setInputFiles('#file-input', file);
    await p.waitForSelector('#view[data-ready="true"]');
    times.push(Date.now() - t0);
    const { openMs, mapMs, page } = await p.$eval('#view', (v) => ({ ...v.dataset, page: window.__drawn - window.__changed }));
    inPage.push(Math.round(page));
    inWorker.push(`${Math.round(openMs)}+${Math.round(mapMs)}`);
    await p.close();
  }
  log(`  change event to drawn map: ${inPage.join(' ms, ')} ms; pick to seen: ${times.join(' ms, ')} ms (worker open+map: ${inWorker.join(', ')} ms)`);
  const m = median(inPage);
  return { page: m, ms: median(times), worker: inWorker[inPage.indexOf(m)] };
}

/** One export on one path; returns {seconds, ready (click to the download offered: the
 * decoding and checking), peakPss, basePss, bytes, decoders}. */
async function exportOnce(ctx, server, { files, query = '', path, save = false }) {
  const p = await ctx.newPage();
  if (save) {
    await p.addInitScript(() => {
      window.showSaveFilePicker = async ({ suggestedName }) =>
        (await navigator.storage.getDirectory()).getFileHandle(`bench-${suggestedName}`, { create: true });
    });
  }
  await p.goto(`${server.url}${query}`);
  await p.setInputFiles('#file-input', files);
  await p.waitForSelector('#view[data-ready="true"]', { timeout: 120000 });
  await p.waitForSelector('#export-path[data-path]', { timeout: 120000 });
  const chosen = await p.$eval('#export-path', (x) => x.dataset.path);
  if (!save && chosen !== path) throw new Error(`expected the ${path} path, the page chose ${chosen}`);
  const mem = sampler(browserPid);
  const t0 = Date.now();
  let size;
  let ready;
  // Finished, or an error on the page (which fails the bench instead of waiting).
  const outcome = (done) =>
    p.waitForSelector(`${done}, #alert:not([hidden])`, { timeout: 1800000 }).then(async () => {
      if (await p.isVisible('#alert')) throw new Error(`the page says: ${await p.textContent('#alert')}`);
    });
  if (save) {
    await p.click('#export-save');
    await outcome('#export-status[data-path="write"]');
    size = await p.evaluate(async () => {
      const dir = await navigator.storage.getDirectory();
      let n = 0;
      for await (const [name, h] of dir.entries()) {
        if (name.startsWith('bench-')) {
          n = (await h.getFile()).size;
          await dir.removeEntry(name);
        }
      }
      return n;
    });
  } else {
    const failed = outcome('#export-status[data-path]').then(() => new Promise(() => {}));
    const [download] = await Promise.race([Promise.all([p.waitForEvent('download', { timeout: 1800000 }), p.click('#export-btn')]), failed]);
    ready = (Date.now() - t0) / 1000;
    const file = await download.path();
    size = statSync(file).size;
    await download.delete();
  }
  const seconds = (Date.now() - t0) / 1000;
  ready ??= seconds;
  const peak = mem.stop();
  const decoders = Number(await p.$eval('#export-status', (x) => x.dataset.decoders || 0));
  // Scratch files of this export go before the next one (they count against the quota).
  await p.evaluate(async () => {
    const dir = await navigator.storage.getDirectory();
    for await (const name of dir.keys()) await dir.removeEntry(name).catch(() => {});
  });
  await p.close();
  return { seconds, ready, peak, base: mem.base, size, path: save ? 'write' : chosen, decoders };
}

let browserPid = 0;

async function browserBench(dir, big, rows, { poolOnly = false } = {}) {
  run('node', ['scripts/build-web.mjs'], { cwd: root });
  const { serve, single } = await import('../tests/browser/helpers.mjs');
  const server = await serve();
  try {
    if (!poolOnly) await withBrowser(async (b) => {
      log(`browser: open + map of the 256 GiB sparse QED (load ${load()})`);
      const served = await openMap(b, server.url, big);
      rows.open.push(['served over http', served.page, served.ms, served.worker, load()]);
      const offline = await openMap(b, `file://${single}`, big);
      rows.open.push(['offline single file', offline.page, offline.ms, offline.worker, load()]);
    });
    if (big) rmSync(big, { force: true });

    // 8 GiB (and 2 GiB) images: 64 MiB runs of data every 256 MiB (a quarter of the disk).
    const random = randomBytes(64 * MiB);
    const text = textChunk(64 * MiB);
    const make = (name, size, fmt, compress) => {
      const offsets = [];
      for (let off = 0; off < size; off += 256 * MiB) offsets.push(off);
      const raw = join(dir, `${name}.raw`);
      const fd = openSync(raw, 'w');
      offsets.forEach((off, i) => {
        // Mixed images: one run in four is text (compressible), the rest random.
        const chunk = compress && i % 4 === 0 ? text : random;
        writeSync(fd, chunk, 0, chunk.length, off);
      });
      closeSync(fd);
      spawnSync('truncate', ['-s', String(size), raw]);
      const args = ['convert', '-q', '-O', fmt, ...(compress ? ['-c', '-o', 'compression_type=zstd'] : []), raw, name];
      run('qemu-img', args, { cwd: dir });
      rmSync(raw);
      return join(dir, name);
    };
    log(`making ${poolOnly ? '' : '2 GiB and 8 GiB QED images (a quarter written) and '}an 8 GiB qcow2 with zstd clusters`);
    const qed2 = poolOnly ? null : make('e2.qed', 2 * GiB, 'qed', false);
    const qed8 = poolOnly ? null : make('e8.qed', 8 * GiB, 'qed', false);
    const mixed8 = make('m8.qcow2', 8 * GiB, 'qcow2', true);
    const computed = JSON.parse(spawnSync('qemu-img', ['map', '--output=json', mixed8]).stdout).filter((r) => r.compressed).reduce((n, r) => n + r.length, 0);
    // A persistent profile: its private storage (OPFS) is on disk, as in a normal window
    // (a fresh context keeps it in memory, with a small quota).
    const { chromium } = await import('playwright-core');
    const profile = mkdtempSync(join(tmpdir(), 'diskscope-bench-profile-'));
    const ctx = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      acceptDownloads: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      // The browser is a child of this process (playwright-core starts it directly).
      const mine = spawnSync('pgrep', ['-P', String(process.pid)]).stdout.toString().trim().split('\n').filter(Boolean);
      browserPid = Number(mine.pop());
      // The decoded paths by one worker, then by the default pool (min(cores, 4) workers).
      const zstd = `8 GiB qcow2, ${(computed / MiB).toFixed(0)} MiB zstd`;
      const decoded = [
        { label: `${zstd} decoded in memory, 1 decoder`, files: [mixed8], path: 'memory', query: '?decoders=1' },
        { label: `${zstd} decoded in memory, default decoders`, files: [mixed8], path: 'memory' },
        { label: `${zstd} decoded to OPFS scratch, 1 decoder`, files: [mixed8], path: 'scratch', query: `?blob-limit=${64 * MiB}&decoders=1` },
        { label: `${zstd} decoded to OPFS scratch, default decoders`, files: [mixed8], path: 'scratch', query: `?blob-limit=${64 * MiB}` },
      ];
      const cases = poolOnly
        ? decoded
        : [
            { label: '2 GiB QED, references', files: [qed2], path: 'references' },
            { label: '8 GiB QED, references', files: [qed8], path: 'references' },
            ...decoded,
            { label: '2 GiB QED, Save to a file (an OPFS file handle)', files: [qed2], save: true },
            { label: '8 GiB QED, Save to a file (an OPFS file handle)', files: [qed8], save: true },
          ];
      for (const c of cases) {
        log(`  ${c.label} (load ${load()})`);
        try {
          const r = await exportOnce(ctx, server, c);
          const by = r.decoders ? ` (${r.decoders} decoder${r.decoders > 1 ? 's' : ''})` : '';
          log(`    ${r.seconds.toFixed(1)} s (offered after ${r.ready.toFixed(1)} s), ${(r.size / MiB / r.seconds).toFixed(0)} MiB/s, peak PSS ${(r.peak / MiB).toFixed(0)} MiB (idle ${(r.base / MiB).toFixed(0)} MiB)${by}`);
          rows.export.push([c.label, `${r.path}${by}`, r.seconds, r.ready, r.size / MiB / r.seconds, r.peak / MiB, r.base / MiB, load()]);
        } catch (err) {
          log(`    FAILED: ${err.message}`);
          rows.export.push([c.label, 'FAILED', 0, 0, 0, 0, 0, String(err.message).slice(0, 80)]);
        }
      }
    } finally {
      await ctx.close();
      rmSync(profile, { recursive: true, force: true });
    }
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------------------------------

function table(head, body) {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r) => '| ' + r.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  return [line(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...body.map(line)].join('\n');
}

async function main() {
  log('building the release CLI');
  run('cargo', ['build', '--release', '-q', '-p', 'diskscope'], { cwd: root, quiet: false });
  if (!existsSync(diskscope)) throw new Error(`no binary at ${diskscope}`);
  const started = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const dir = mkdtempSync(join(tmpdir(), 'diskscope-bench-'));
  const rows = { cli: [], open: [], export: [] };
  const poolOnly = process.argv.includes('--pool');
  try {
    const big = poolOnly ? null : cliBench(dir, rows.cli);
    await browserBench(dir, big, rows, { poolOnly });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const machine = `${cpus().length} × ${cpus()[0].model.trim()}, ${(totalmem() / GiB).toFixed(0)} GiB RAM; ${spawnSync('chromium', ['--version']).stdout.toString().trim()}; ${spawnSync('qemu-img', ['--version']).stdout.toString().split('\n')[0]}`;
  const head = `Run ${started} on ${machine}. Load average (1, 5, 15 min) at each row's end: this machine is shared, so compare rows run under similar load.`;
  const exportTable = [
    'Browser export (served page; click to download finished, or to the saved file closed; offered: click to the download starting, which holds the decoding), peak PSS of all browser processes:',
    '',
    table(
      ['image and path', 'path', 'time', 'offered', 'throughput', 'peak PSS', 'idle PSS', 'load'],
      rows.export.map(([lbl, path, s, o, r, peak, base, l]) => [lbl, path, `${s.toFixed(1)} s`, `${o.toFixed(1)} s`, `${r.toFixed(0)} MiB/s`, `${peak.toFixed(0)} MiB`, `${base.toFixed(0)} MiB`, l]),
    ),
  ];
  if (poolOnly) {
    console.log(`\n${[head, '', ...exportTable].join('\n')}`);
    return;
  }
  const out = [
    head,
    '',
    `CLI, median of ${RUNS} runs (ratio < 1: diskscope is faster):`,
    '',
    table(
      ['operation', 'diskscope', 'qemu-img', 'ratio', 'check', 'load'],
      rows.cli.map(([op, o, q, n, l]) => [op, `${o.toFixed(3)} s`, `${q.toFixed(3)} s`, `${(o / q).toFixed(2)}x`, n, l]),
    ),
    '',
    `Writing 1 GiB of zeros into a new file (\`dd bs=1M\`, median of ${RUNS}): ${writeFloor.toFixed(3)} s. Both tools must write that much page cache on the two uncompressed rows.`,
    '',
    'Browser (headless Chromium): a 256 GiB sparse QED (64 KiB in every GiB) from the file chosen to its map drawn, median of 5 fresh pages; in the worker, open + map:',
    '',
    table(['page', 'file chosen to map drawn (in the page)', 'pick to seen (with Playwright)', 'worker open + map', 'load'], rows.open.map(([w, pg, ms, wk, l]) => [w, `${pg} ms`, `${ms} ms`, `${wk} ms`, l])),
    '',
    ...exportTable,
  ].join('\n');
  console.log(`\n${out}`);
  if (process.argv.includes('--write')) {
    const file = join(root, 'BENCHMARKS.md');
    const text = readFileSync(file, 'utf8');
    const start = '<!-- bench:start -->';
    const end = '<!-- bench:end -->';
    const a = text.indexOf(start);
    const z = text.indexOf(end);
    if (a < 0 || z < a) throw new Error(`BENCHMARKS.md has no ${start} … ${end} section`);
    writeFileSync(file, `${text.slice(0, a + start.length)}\n${out}\n${text.slice(z)}`);
    log('BENCHMARKS.md updated');
  }
}

await main();
