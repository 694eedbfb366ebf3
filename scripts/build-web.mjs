#!/usr/bin/env node
// Build the browser side of diskscope.
//
//   1. cargo builds crate/wasm for wasm32 with the `wasm` profile;
//   2. wasm-bindgen writes `--target no-modules` glue (a classic script that defines the
//      global `wasm_bindgen`; works in a classic worker started from a blob: URL on
//      file://, where module workers fail);
//   3. esbuild bundles web/main.js (the page) and web/worker.js (glue + worker) as IIFEs.
//
// Output: dist/site/ (index.html + app.js + worker.js + diskscope_bg.wasm + styles.css,
// to serve over http) and dist/diskscope.html (one self-contained file: CSS and JS
// inline, the worker as text, the wasm as base64; opens from file:// with no network).
// Works offline. No wasm-opt (Debian's binaryen breaks wasm-bindgen output).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const site = join(dist, 'site');
const pkg = join(root, 'web', 'pkg');
const t0 = Date.now();
const step = (what) => console.log(`[build-web] ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

function tool(name) {
  const local = join(homedir(), '.cargo', 'bin', name);
  return existsSync(local) ? local : name;
}

function run(cmd, args) {
  try {
    execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
  } catch (err) {
    console.error(`[build-web] failed: ${cmd} ${args.join(' ')}`);
    process.exit(err.status || 1);
  }
}

// 1. wasm
step('cargo build -p diskscope-wasm --target wasm32-unknown-unknown --profile wasm');
run(tool('cargo'), ['build', '-p', 'diskscope-wasm', '--target', 'wasm32-unknown-unknown', '--profile', 'wasm']);
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target');
const wasmIn = join(targetDir, 'wasm32-unknown-unknown', 'wasm', 'diskscope_wasm.wasm');

// 2. glue
step('wasm-bindgen --target no-modules');
rmSync(pkg, { recursive: true, force: true });
run(tool('wasm-bindgen'), ['--target', 'no-modules', '--no-typescript', '--out-dir', pkg, '--out-name', 'diskscope', wasmIn]);
const glue = readFileSync(join(pkg, 'diskscope.js'), 'utf8');
const wasm = readFileSync(join(pkg, 'diskscope_bg.wasm'));

// 3. bundles
step('esbuild');
const bundle = async (entry) => {
  const r = await esbuild.build({
    entryPoints: [join(root, 'web', entry)],
    bundle: true,
    format: 'iife',
    target: ['chrome100', 'firefox100', 'safari15'],
    write: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  return r.outputFiles[0].text;
};
const app = await bundle('main.js');
const workerOwn = await bundle('worker.js');
const worker = `${glue}\n${workerOwn}`;
const css = (
  await esbuild.build({ entryPoints: [join(root, 'web', 'styles.css')], bundle: true, minify: true, write: false, logLevel: 'warning' })
).outputFiles[0].text;
const html = readFileSync(join(root, 'index.html'), 'utf8');

const STYLE_TAG = '<link rel="stylesheet" href="styles.css">';
const SCRIPT_TAG = '<script src="app.js"></script>';
for (const tag of [STYLE_TAG, SCRIPT_TAG]) {
  if (!html.includes(tag)) {
    console.error(`[build-web] index.html must contain ${tag}`);
    process.exit(1);
  }
}

// The served site.
rmSync(site, { recursive: true, force: true });
mkdirSync(site, { recursive: true });
writeFileSync(join(site, 'index.html'), html);
writeFileSync(join(site, 'app.js'), app);
writeFileSync(join(site, 'worker.js'), worker);
writeFileSync(join(site, 'styles.css'), css);
writeFileSync(join(site, 'diskscope_bg.wasm'), wasm);

// The single file. Inside a <script> element, only "</script" ends it: escape that in the
// JS ("<\/script" means the same in strings, regexes and templates; comments don't care).
const inlineJs = (s) => s.replace(/<\/(script)/gi, '<\\/$1');
const single = html
  .replace(STYLE_TAG, () => `<style>\n${css.replace(/<\/(style)/gi, '<\\/$1')}</style>`)
  .replace(
    SCRIPT_TAG,
    () =>
      `<script type="text/plain" id="ds-worker">\n${inlineJs(worker)}</script>\n` +
      `<script type="application/octet-stream" id="ds-wasm">${wasm.toString('base64')}</script>\n` +
      `<script>\n${inlineJs(app)}</script>`,
  );
writeFileSync(join(dist, 'diskscope.html'), single);

const kb = (n) => `${(n / 1024).toFixed(0)} KiB`;
step(`done: dist/site/ (wasm ${kb(wasm.length)}), dist/diskscope.html (${kb(Buffer.byteLength(single))})`);
