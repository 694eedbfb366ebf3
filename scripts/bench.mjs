// A benchmark, not a test (`npm run bench`): diskscope's CLI against qemu-img on the same
// images, made in a temporary folder and removed afterwards.
//   convert: a 2 GiB QED image, every other MiB written with random bytes (1 GiB of data)
//   map:     a 256 GiB sparse QED image with 64 KiB written every GiB
//   browser: the same 256 GiB image opened in the offline single file in headless Chromium,
//            from picking the file to the map's legend on screen (5 runs)
// Each command runs 3 times; the table shows the median wall-clock time.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target');
const diskscope = join(targetDir, 'release', 'diskscope');
const RUNS = 3;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function run(cmd, args, { cwd, quiet = true } = {}) {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'pipe'], maxBuffer: 64 * MiB });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}\n${r.stderr}`);
  return r;
}

function timeIt(label, cmd, args, { before } = {}) {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    if (before) before();
    const t0 = process.hrtime.bigint();
    run(cmd, args);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  process.stderr.write(`  ${label}: ${times.map((t) => t.toFixed(3)).join(' s, ')} s\n`);
  return median;
}

/** Run qemu-io commands in batches (one process per batch). */
function qemuIo(cwd, fmt, file, cmds) {
  for (let i = 0; i < cmds.length; i += 256) {
    const args = ['-f', fmt];
    for (const c of cmds.slice(i, i + 256)) args.push('-c', c);
    args.push(file);
    run('qemu-io', args, { cwd });
  }
}

/** Remove the last run's output and flush dirty pages, so no run pays for another's writeback. */
function fresh(file) {
  rmSync(file, { force: true });
  spawnSync('sync');
}

function sameFiles(a, b) {
  return spawnSync('cmp', ['-s', a, b]).status === 0;
}

/** Median ms from picking `file` in the page to its map legend drawn (page already loaded). */
async function browserOpenMap(file) {
  run('node', ['scripts/build-web.mjs'], { cwd: root });
  const { browser, single } = await import('../tests/browser/helpers.mjs');
  const b = await browser();
  try {
    const p = await b.newPage();
    await p.goto(`file://${single}`);
    await p.waitForSelector('#file-input', { state: 'attached' });
    const times = [];
    for (let i = 0; i < 5; i++) {
      await p.evaluate(() => document.querySelector('#legend')?.replaceChildren());
      const t0 = Date.now();
      await p.setInputFiles('#file-input', file);
      await p.waitForFunction(() => document.querySelectorAll('#legend li').length > 0);
      times.push(Date.now() - t0);
    }
    times.sort((a, b) => a - b);
    process.stderr.write(`  browser open + map: ${times.join(' ms, ')} ms\n`);
    return times[2];
  } finally {
    await b.close();
  }
}

async function main() {
  process.stderr.write('building the release CLI\n');
  run('cargo', ['build', '--release', '-q', '-p', 'diskscope'], { cwd: root, quiet: false });
  if (!existsSync(diskscope)) throw new Error(`no binary at ${diskscope}`);

  const dir = mkdtempSync(join(tmpdir(), 'diskscope-bench-'));
  const rows = [];
  let browserMs;
  try {
    // --- convert: 2 GiB QED, half allocated with random data ----------------------------
    process.stderr.write('making a 2 GiB QED image with 1 GiB of random data\n');
    writeFileSync(join(dir, 'random.bin'), randomBytes(MiB + 4093)); // odd length: no repeats per MiB
    run('qemu-img', ['create', '-q', '-f', 'qed', 'half.qed', String(2 * GiB)], { cwd: dir });
    const writes = [];
    for (let off = 0; off < 2 * GiB; off += 2 * MiB) writes.push(`write -q -s random.bin ${off} ${MiB}`);
    qemuIo(dir, 'qed', 'half.qed', writes);
    const img = join(dir, 'half.qed');
    const ours = join(dir, 'ours.raw');
    const theirs = join(dir, 'qemu.raw');
    process.stderr.write(`image: ${(statSync(img).size / MiB).toFixed(0)} MiB on disk\n`);

    process.stderr.write('convert to raw\n');
    const tOurs = timeIt('diskscope convert', diskscope, ['convert', img, ours], { before: () => fresh(ours) });
    const tQemu = timeIt('qemu-img convert -O raw', 'qemu-img', ['convert', '-O', 'raw', img, theirs], { before: () => fresh(theirs) });
    const same = sameFiles(ours, theirs);
    rows.push(['convert 2 GiB QED (1 GiB data) to raw', tOurs, tQemu, same ? 'outputs identical' : 'OUTPUTS DIFFER']);
    rmSync(ours, { force: true });
    rmSync(theirs, { force: true });
    rmSync(img, { force: true });

    // --- map: 256 GiB sparse QED -----------------------------------------------------------
    process.stderr.write('making a 256 GiB sparse QED image (64 KiB written every GiB)\n');
    run('qemu-img', ['create', '-q', '-f', 'qed', 'big.qed', String(256 * GiB)], { cwd: dir });
    const sparse = [];
    for (let g = 0; g < 256; g++) sparse.push(`write -q -P ${1 + (g % 255)} ${g * GiB + (g % 7) * 64 * 1024} 65536`);
    qemuIo(dir, 'qed', 'big.qed', sparse);
    const big = join(dir, 'big.qed');
    process.stderr.write('map --json\n');
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
    rows.push(['map 256 GiB sparse QED', mOurs, mQemu, note]);
    process.stderr.write('browser: open and map the 256 GiB image in the single file\n');
    browserMs = await browserOpenMap(big);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const head = ['operation', 'diskscope', 'qemu-img', 'ratio', 'check'];
  const body = rows.map(([op, o, q, n]) => [op, `${o.toFixed(3)} s`, `${q.toFixed(3)} s`, `${(o / q).toFixed(2)}x`, n]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r) => '| ' + r.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  console.log(`\nmedian of ${RUNS} runs (ratio < 1: diskscope is faster)`);
  console.log(line(head));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const r of body) console.log(line(r));
  console.log(`\nbrowser (headless Chromium, offline single file): open + map the 256 GiB sparse QED: median ${browserMs} ms of 5`);
}

await main();
