// A seed format on the page: an add-cow (ACOW, FORMATS.md 2.2) whose image file is given
// later. No tool writes add-cow, so the image is laid out here from the spec table.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, tmp } from './helpers.mjs';

const CLUSTER = 65536;
const DISK = 17 * CLUSTER + 4096; // not a multiple of the cluster
let dir, server, b, expected;

before(async () => {
  requireBuild();
  dir = tmp();
  const clusters = Math.ceil(DISK / CLUSTER);
  const h = Buffer.alloc(CLUSTER + CLUSTER); // header, then the bitmap rounded to a cluster
  h.write('ACOW', 0, 'latin1');
  h.writeUInt32LE(76, 12); // image name offset
  h.writeUInt32LE(8, 16); // image name size
  h.writeUInt32LE(16, 20); // cluster_bits
  h.writeUInt32LE(CLUSTER, 40); // header_size = max(cluster, 4096)
  h.write('raw', 60, 'latin1'); // image_fmt
  h.write('disk.raw', 76, 'latin1');
  const raw = Buffer.alloc(DISK);
  expected = Buffer.alloc(DISK);
  for (let c = 0; c < clusters; c++) {
    const fill = 0x10 + c;
    const end = Math.min((c + 1) * CLUSTER, DISK);
    raw.fill(fill, c * CLUSTER, end);
    if (c % 3 !== 1) {
      h[CLUSTER + (c >> 3)] |= 1 << (c & 7); // stored in the image file
      expected.fill(fill, c * CLUSTER, end);
    } // else: bit 0 and no backing file: zeros, though disk.raw holds bytes there
  }
  writeFileSync(join(dir, 'top.acow'), h);
  writeFileSync(join(dir, 'disk.raw'), raw);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

test('add-cow: the missing image file is named, added without starting over, and the download follows the bitmap', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', join(dir, 'top.acow'));
  await p.waitForSelector('.add-missing');
  const view = await p.textContent('#view');
  assert.match(view, /Missing image file: disk\.raw/);
  assert.match(await p.textContent('#format-badge'), /ADD-COW/i);
  await p.setInputFiles('#add-input', join(dir, 'disk.raw'));
  await p.waitForFunction(() => !document.querySelector('.add-missing'));
  await p.waitForFunction(() => [...document.querySelectorAll('#legend li')].some((li) => li.dataset.class === 'data' && li.dataset.bytes !== '0'));
  const [download] = await Promise.all([p.waitForEvent('download'), p.click('#export-btn')]);
  const got = readFileSync(await download.path());
  assert.equal(got.length, DISK);
  assert.ok(got.equals(expected), 'the raw download does not follow the bitmap');
  assert.deepEqual(errors, []);
  await p.context().close();
});
