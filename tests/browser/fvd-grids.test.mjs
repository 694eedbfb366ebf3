// FVD keeps a bitmap per block and a table per chunk: the map can be drawn at either.
// A compact variant-C image (DECISIONS.md section 1 offsets) with 64 KiB bitmap blocks and
// 256 KiB table chunks over a 1 MiB disk: 4 cells per chunk, 16 per block.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, tmp } from './helpers.mjs';

const KiB = 1024;
const BLOCK = 64 * KiB;
const CHUNK = 4 * BLOCK;
const VSIZE = 16 * BLOCK;
const HEADER = 8192;
const BITMAP = HEADER;
const TABLE = BITMAP + 4096;
const DATA = TABLE + 4096;
let dir, server, b;

function fvd() {
  const h = Buffer.alloc(DATA);
  const u32 = (v, at) => h.writeUInt32LE(v, at);
  const u64 = (v, at) => h.writeBigUInt64LE(BigInt(v), at);
  h.write('FVD\0', 0, 'latin1');
  u32(HEADER, 4); // header_size
  u64(VSIZE, 16); // virtual_disk_size
  u64(DATA, 24); // data_offset
  h.write('base.raw', 1072, 'latin1'); // base_img
  h.write('raw', 2096, 'latin1'); // base_img_fmt
  u64(VSIZE, 2112); // base_img_size
  u64(BITMAP, 2120); // bitmap_offset
  u64(4096, 2128); // bitmap_size
  u64(BLOCK, 2136); // block_size
  u32(1, 2160); // clean_shutdown
  u64(TABLE, 2188); // table_offset
  u64(4096, 2196); // table_size (bytes)
  u64(CHUNK, 2204); // chunk_size
  h[BITMAP] = 0b0011_0001; // blocks 0, 4 and 5 are in the FVD data
  for (let c = 0; c < 4; c++) u32(c < 2 ? c : 0xffffffff, TABLE + 4 * c); // chunks 0, 1 stored
  return Buffer.concat([h, Buffer.alloc(2 * CHUNK, 0xdd)]);
}

before(async () => {
  requireBuild();
  dir = tmp();
  writeFileSync(join(dir, 'c.fvd'), fvd());
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
