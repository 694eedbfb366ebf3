// Shared by the browser tests: images made with qemu-img, a static server for dist/site,
// and Debian's Chromium driven by playwright-core.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const root = resolve(import.meta.dirname, '../..');
export const site = join(root, 'dist/site');
export const single = join(root, 'dist/diskscope.html');

export function requireBuild() {
  for (const p of [join(site, 'index.html'), single]) {
    if (!existsSync(p)) throw new Error(`${p} is missing: run \`npm run build\` first (npm test does)`);
  }
}

/** The release CLI (scripts/test.sh builds it first and names it in DISKSCOPE_BIN). */
export function cli() {
  const target = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target');
  const bin = process.env.DISKSCOPE_BIN || join(target, 'release/diskscope');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build --release -p diskscope\` first (npm test does)`);
  return bin;
}

const made = [];
// Test images reach GiBs (sparse or not); each test file runs in its own process, so its
// scratch folders go when it exits, unless DISKSCOPE_KEEP_TMP is set to look at them.
process.on('exit', () => {
  if (process.env.DISKSCOPE_KEEP_TMP) return;
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export function tmp() {
  const d = mkdtempSync(join(tmpdir(), 'diskscope-browser-'));
  made.push(d);
  return d;
}

export function sh(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.png': 'image/png' };

/** Serve dist/site on 127.0.0.1 at a free port. */
export async function serve() {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^([/\\])+/, '');
    const file = join(site, path || 'index.html');
    if (!file.startsWith(site) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((ok) => server.close(ok)) };
}

export async function browser() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** A page that fails the test on any uncaught error in the page or the worker. */
export async function page(b, errors) {
  const ctx = await b.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  p.on('pageerror', (e) => errors.push(`page: ${e.message}`));
  p.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  p.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  return p;
}

/** Screenshots go to tests/out/ (gitignored), to be looked at. */
export const outDir = join(root, 'tests/out');

export async function shot(p, name, opts = {}) {
  mkdirSync(outDir, { recursive: true });
  await p.screenshot({ path: join(outDir, `${name}.png`), fullPage: true, ...opts });
}

/** A whole-pixel point at the middle of the map cell holding guest byte `g` (it must be on
 * show), in page coordinates. Whole pixels: the pointer's events come in whole pixels, so
 * the middle of a 1-pixel cell at a fractional offset would land outside it. */
export async function cellPoint(p, g) {
  const d = await p.$eval('#map', (c) => ({ ...c.dataset }));
  const i = Math.floor((g - Number(d.start)) / Number(d.cellBytes));
  if (!(i >= 0 && i < Number(d.cells))) throw new Error(`guest ${g} is not in the window ${JSON.stringify(d)}`);
  const box = await p.locator('#map').boundingBox();
  const px = Number(d.cellPx);
  const mid = (edge) => Math.ceil(edge + (px - 1) / 2);
  return { x: mid(box.x + (i % d.cols) * px), y: mid(box.y + Math.floor(i / d.cols) * px) };
}

/** Move the mouse onto the map cell that holds guest byte `offset`. */
export async function hoverGuest(p, offset) {
  const { x, y } = await cellPoint(p, offset);
  await p.mouse.move(x, y);
}

/** The page's error box, once it shows: its title, message and hint. */
export async function alertShown(p, timeout = 30000) {
  await p.waitForSelector('#alert:not([hidden])', { timeout });
  return { title: await p.textContent('#alert-title'), message: await p.textContent('#alert-message'), hint: await p.textContent('#alert-hint') };
}
