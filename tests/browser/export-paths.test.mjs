// The export paths other than "references and small decoded Blobs":
//   - more decoded bytes than the in-memory limit: served over http the decoded bytes go
//     to an OPFS scratch file and the download still matches the CLI; cancelled mid-way,
//     no scratch file is left; from file:// the page refuses before any work, naming the
//     CLI command;
//   - Save to a file… (File System Access): the picker is replaced by one that hands out
//     an OPFS file (the real picker needs a person), which takes the same writes;
//     cancelled mid-way, the file stays empty;
//   - SHA-256 of the raw image equals that of the CLI's output.
// Each path runs with a pool of decoding workers (`?decoders=N`; web/decode-pool.js): its
// output still matches, and a cancelled export stops the pool's workers (Playwright lists
// the nested workers of the page).
// `?blob-limit=` lowers the in-memory limit so that small images reach the bounded path.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, sh, single, tmp } from './helpers.mjs';
import { cli, makeImages, requireCli } from './export-images.mjs';

const MiB = 1024 * 1024;
let dir, server, b, cases;
const byName = (n) => cases.find((c) => c.name === n);
const sha = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
// The inspector's worker and the decoders it started.
const workers = (p) => p.workers().length;

before(async () => {
  requireBuild();
  requireCli();
  dir = tmp();
  cases = makeImages(dir);
  // 256 MiB of compressible text as zlib clusters: decoding it takes seconds, long enough
  // to cancel in the middle.
  const big = Buffer.alloc(256 * MiB);
  for (let i = 0; i < big.length; i += 512) big.write(`${i} `.repeat(8), i, 'latin1');
  writeFileSync(join(dir, 'big.raw'), big);
  sh('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', 'big.raw', 'big.qcow2'], dir);
  sh(cli, ['convert', 'big.qcow2', 'big.expected.raw'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

async function open(p, url, files) {
  await p.goto(url);
  await p.setInputFiles('#file-input', files.map((f) => join(dir, f)));
  await p.waitForSelector('#view[data-ready="true"]');
  await p.waitForSelector('#export-path[data-path]');
  return p.$eval('#export-path', (x) => x.dataset.path);
}

const opfsNames = (p) =>
  p.evaluate(async () => {
    const names = [];
    for await (const n of (await navigator.storage.getDirectory()).keys()) names.push(n);
    return names;
  });

test('over http, decoded bytes beyond the memory limit go through an OPFS scratch file', async () => {
  const errors = [];
  const p = await page(b, errors);
  const limit = `${server.url}?blob-limit=${MiB}&decoders=2`;

  // Cancel in the middle: nothing downloaded, no scratch file left, the decoders stopped.
  assert.equal(await open(p, limit, ['big.qcow2']), 'scratch');
  assert.match(await p.textContent('#export-path'), /private storage \(OPFS\)\. It is decoded by 2 workers in parallel\./);
  let downloads = 0;
  p.on('download', () => downloads++);
  await p.click('#export-btn');
  await p.waitForFunction(() => document.getElementById('export-bar').value > 0.05, null, { timeout: 30000 });
  assert.match(await p.textContent('#export-text'), /Decoding into browser storage .* of 256 MiB · .*\/s · about .* left/);
  assert.equal(workers(p), 3, 'the inspector and two decoders');
  await p.click('#export-cancel');
  await p.waitForSelector('#export-progress', { state: 'hidden' });
  assert.match(await p.textContent('#export-status'), /Cancelled/);
  await p.waitForFunction(async () => {
    for await (const n of (await navigator.storage.getDirectory()).keys()) if (n.startsWith('diskscope-scratch-')) return false;
    return true;
  }, null, { timeout: 10000 });
  for (let i = 0; i < 100 && workers(p) > 1; i++) await p.waitForTimeout(100);
  assert.equal(workers(p), 1, 'the cancelled export stopped its decoders');
  assert.equal(downloads, 0);

  // Whole exports on the same path match the CLI: the big image's 64 chunks of decoded
  // bytes shared by three decoders, and the small zlib image's few by the default pool.
  const big = { files: ['big.qcow2'], expected: join(dir, 'big.expected.raw') };
  for (const [c, query] of [[big, '&decoders=3'], [byName('zlib.qcow2'), '']]) {
    assert.equal(await open(p, `${server.url}?blob-limit=${MiB}${query}`, c.files), 'scratch');
    const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
    assert.ok(readFileSync(await download.path()).equals(readFileSync(c.expected)), `${c.files[0]}: the download differs from diskscope convert`);
    assert.equal(await p.$eval('#export-status', (x) => x.dataset.path), 'scratch');
    if (c === big) {
      assert.equal(await p.$eval('#export-status', (x) => x.dataset.decoders), '3');
      assert.match(await p.textContent('#export-status'), /256 MiB decoded into browser storage by 3 workers in parallel/);
    }
  }
  assert.equal((await opfsNames(p)).filter((n) => n.startsWith('diskscope-scratch-')).length, 1, 'the finished export keeps its scratch file for the download');
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('decoded bytes the browser drops from memory are decoded again into the scratch file; from file:// the page says so', async () => {
  const errors = [];
  const p = await page(b, errors);
  const c = byName('zstd.qcow2');
  // ?lose-blobs: every in-memory decoded Blob fails its read-back, as Chromium's can.
  assert.equal(await open(p, `${server.url}?lose-blobs`, c.files), 'memory');
  const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
  assert.ok(readFileSync(await download.path()).equals(readFileSync(c.expected)), 'the download differs from diskscope convert');
  assert.equal(await p.$eval('#export-status', (x) => x.dataset.path), 'scratch');
  assert.match(await p.textContent('#export-status'), /could not keep the decoded bytes in memory, so they went to its private storage instead/);
  assert.deepEqual(errors, []);
  await p.context().close();

  const q = await page(b, []);
  assert.equal(await open(q, `file://${single}?lose-blobs`, c.files), 'memory');
  let downloads = 0;
  q.on('download', () => downloads++);
  await q.click('#export-btn');
  await q.waitForSelector('#alert[data-kind="blob-lost"]:not([hidden])', { timeout: 60000 });
  assert.match(await q.textContent('#alert-message'), /could not keep decoded bytes at guest offset \d+ in memory/);
  assert.equal(downloads, 0);
  await q.context().close();
});

test('from file://, an image with more decoded bytes than memory holds is refused up front, with the CLI command', async () => {
  const errors = [];
  const p = await page(b, errors);
  assert.equal(await open(p, `file://${single}?blob-limit=${MiB}`, ['zlib.qcow2']), 'refused');
  assert.equal(await p.textContent('#export-cli'), 'diskscope convert zlib.qcow2 zlib.raw');
  assert.match(await p.textContent('#export-path'), /must be decoded .* more than a page opened from a file can hold/);
  assert.equal(await p.$eval('#export-btn', (x) => x.disabled), true);
  // Images with nothing to decode still download from file://.
  const c = byName('a.qed');
  assert.equal(await open(p, `file://${single}?blob-limit=${MiB}`, c.files), 'references');
  assert.equal(await p.$eval('#export-btn', (x) => x.disabled), false);
  const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
  assert.ok(readFileSync(await download.path()).equals(readFileSync(c.expected)));
  // Within the memory limit, decoded bytes come from a pool of decoders here too (started
  // from the page's own text: a worker may not load the page's blob: URL on file://).
  const z = byName('zlib.qcow2');
  assert.equal(await open(p, `file://${single}?decoders=2`, z.files), 'memory');
  const [zd] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
  assert.ok(readFileSync(await zd.path()).equals(readFileSync(z.expected)), 'the download from file:// differs from diskscope convert');
  assert.equal(await p.$eval('#export-status', (x) => x.dataset.decoders), '2');
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('Save to a file… writes the raw image with positioned writes; cancelled, the file stays empty', async () => {
  const errors = [];
  const p = await page(b, errors);
  // The save picker needs a person: hand out OPFS files instead (same FileSystemFileHandle).
  await p.addInitScript(() => {
    window.showSaveFilePicker = async ({ suggestedName }) =>
      (await navigator.storage.getDirectory()).getFileHandle(`picked-${suggestedName}`, { create: true });
  });
  const picked = (name) =>
    p.evaluate(async (n) => {
      const f = await (await (await navigator.storage.getDirectory()).getFileHandle(n)).getFile();
      const h = await crypto.subtle.digest('SHA-256', await f.arrayBuffer());
      return { size: f.size, sha: [...new Uint8Array(h)].map((x) => x.toString(16).padStart(2, '0')).join('') };
    }, name);

  await open(p, `${server.url}?decoders=2`, ['big.qcow2']);
  assert.match(await p.textContent('#export-path'), /Save to a file… writes straight into a file you pick/);
  await p.click('#export-save');
  await p.waitForFunction(() => document.getElementById('export-bar').value > 0.05, null, { timeout: 30000 });
  assert.match(await p.textContent('#export-text'), /^Writing .* of 256 MiB/);
  assert.equal(workers(p), 3, 'the inspector and two decoders');
  await p.click('#export-cancel');
  await p.waitForSelector('#export-progress', { state: 'hidden' });
  for (let i = 0; i < 100 && workers(p) > 1; i++) await p.waitForTimeout(100);
  assert.equal(workers(p), 1, 'the cancelled save stopped its decoders');
  assert.equal((await picked('picked-big.raw')).size, 0, 'a cancelled save leaves the picked file empty');

  for (const name of ['zlib.qcow2', 'top.qcow2']) {
    const c = byName(name);
    await open(p, `${server.url}?decoders=2`, c.files);
    await p.click('#export-save');
    await p.waitForSelector('#export-status[data-path="write"]', { timeout: 60000 });
    const raw = name.replace(/\.[^.]*$/, '.raw');
    assert.match(await p.textContent('#export-status'), new RegExp(`Saved picked-${raw}`));
    if (c.computed) assert.match(await p.textContent('#export-status'), /decoded by 2 workers in parallel/);
    const got = await picked(`picked-${raw}`);
    assert.equal(got.size, readFileSync(c.expected).length);
    assert.equal(got.sha, sha(c.expected), `${name}: the saved file differs from diskscope convert`);
  }
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('SHA-256 of the raw image equals that of the CLI output', async () => {
  const errors = [];
  const p = await page(b, errors);
  // The decoded chunks are hashed in guest order whoever decodes them: one worker, two, or
  // three sharing the big image's sixteen.
  const big = { files: ['big.qcow2'], expected: join(dir, 'big.expected.raw') };
  for (const [c, query] of [[byName('top.qcow2'), ''], [byName('zstd.qcow2'), '?decoders=1'], [byName('zstd.qcow2'), '?decoders=2'], [big, '?decoders=3']]) {
    await open(p, `${server.url}${query}`, c.files);
    await p.click('#export-sha');
    await p.waitForSelector('#export-sha-out[data-sha256]', { timeout: 60000 });
    assert.equal(await p.$eval('#export-sha-out', (x) => x.dataset.sha256), sha(c.expected), `${c.files[0]}${query}`);
    if (query) assert.equal(await p.$eval('#export-sha-out', (x) => x.dataset.decoders), query.split('=')[1], `${c.files[0]}${query}`);
  }
  assert.deepEqual(errors, []);
  await p.context().close();
});
