// Download raw on a fragmented image (16,000 parts): the page shows progress while the
// worker assembles the Blob, Cancel stops it and leaves the page usable, and a second
// export completes byte-identical to qemu-img convert.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, sh, shot, tmp } from './helpers.mjs';

let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  // 4 KiB clusters, every other one written: 8000 stored runs and 8000 holes.
  sh('qemu-img', ['create', '-q', '-f', 'qed', '-o', 'cluster_size=4096', 'frag.qed', '64M'], dir);
  const writes = [];
  for (let i = 0; i < 8000; i++) writes.push('-c', `write -q -P ${1 + (i % 250)} ${i * 8192} 4k`);
  sh('qemu-io', ['-f', 'qed', ...writes, 'frag.qed'], dir);
  sh('qemu-img', ['convert', '-O', 'raw', 'frag.qed', 'expected.raw'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

test('export shows progress, can be cancelled, and then completes byte-identical', async () => {
  const errors = [];
  const p = await page(b, errors);
  let downloads = 0;
  p.on('download', () => downloads++);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', join(dir, 'frag.qed'));
  await p.waitForSelector('#view[data-ready="true"]');

  await p.click('#export-btn');
  await p.waitForSelector('#export-progress:not([hidden])');
  await p.waitForFunction(() => document.getElementById('export-bar').value > 0, null, { timeout: 20000 });
  assert.match(await p.textContent('#export-text'), /Assembling .* of 64 MiB/);
  assert.equal(await p.$eval('#export-btn', (x) => x.disabled), true, 'one export at a time');
  await shot(p, 'export-progress', { fullPage: false });
  await p.click('#export-cancel');
  await p.waitForSelector('#export-progress', { state: 'hidden' });
  assert.match(await p.textContent('#export-status'), /Cancelled/);
  assert.equal(await p.$eval('#export-btn', (x) => x.disabled), false);
  await p.waitForTimeout(300);
  assert.equal(downloads, 0, 'a cancelled export downloads nothing');

  const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
  assert.equal(download.suggestedFilename(), 'frag.raw');
  const got = readFileSync(await download.path());
  assert.ok(got.equals(readFileSync(join(dir, 'expected.raw'))), 'the raw image differs from qemu-img convert -O raw');
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('past the part bound, short runs are read through the core instead, and the download is the same', async () => {
  const errors = [];
  const p = await page(b, errors);
  const open = async (query) => {
    await p.goto(`${server.url}${query}`);
    await p.setInputFiles('#file-input', join(dir, 'frag.qed'));
    await p.waitForSelector('#view[data-ready="true"]');
    await p.waitForSelector('#export-path[data-parts]');
    return p.$eval('#export-path', (x) => ({ path: x.dataset.path, parts: Number(x.dataset.parts) }));
  };
  // Unbounded here: one reference per stored run, zero Blobs for the holes, nothing decoded.
  const whole = await open('');
  assert.equal(whole.path, 'references');
  assert.ok(whole.parts >= 16000, `${whole.parts} parts`);
  // Bounded at 1000: the 4 KiB runs are merged and read through the core, in chunks.
  const folded = await open('?max-parts=1000');
  assert.equal(folded.path, 'memory', 'the folded runs count as decoded bytes');
  assert.ok(folded.parts <= 1000, `${folded.parts} parts`);
  const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
  const got = readFileSync(await download.path());
  assert.ok(got.equals(readFileSync(join(dir, 'expected.raw'))), 'the raw image differs from qemu-img convert -O raw');
  assert.deepEqual(errors, []);
  await p.context().close();
});
