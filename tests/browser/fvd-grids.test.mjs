// FVD keeps a bitmap per block and a table per chunk: the map can be drawn at either.
// A compact variant-C image (DECISIONS.md section 1 offsets) with 64 KiB bitmap blocks and
// 256 KiB table chunks over a 1 MiB disk: 4 cells per chunk, 16 per block.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, tmp } from './helpers.mjs';
import { BLOCK, CHUNK, VSIZE, fvdImage } from './fvd-writer.mjs';

let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  // Blocks 0, 4 and 5 in the FVD data; chunks 0 and 1 stored.
  writeFileSync(join(dir, 'c.fvd'), fvdImage({ bitmap: 0b0011_0001, chunks: [0, 1, 0xffffffff, 0xffffffff], data: Buffer.alloc(2 * CHUNK, 0xdd) }));
  writeFileSync(join(dir, 'base.raw'), Buffer.alloc(VSIZE, 0xbb));
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

test('FVD: the map is drawn per table chunk, and per bitmap block on request', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', [join(dir, 'c.fvd'), join(dir, 'base.raw')]);
  await p.waitForSelector('#view[data-ready="true"]');
  assert.equal(await p.isVisible('#map-grid'), true);
  assert.match(await p.textContent('#map-scale'), /1 cell = 256 KiB .* 4 cells/);
  const options = await p.$$eval('#map-grid option', (o) => o.map((x) => x.textContent));
  assert.ok(options.some((t) => /bitmap block .*64 KiB/.test(t)), options.join(' | '));
  await p.selectOption('#map-grid', String(BLOCK));
  await p.waitForFunction(() => /16 cells/.test(document.querySelector('#map-scale').textContent));
  assert.match(await p.textContent('#map-scale'), /1 cell = 64 KiB/);
  assert.deepEqual(errors, []);
  await p.context().close();
});
