// GOW3 on the page (DECISIONS.md section 4, little-endian: magic, flags, virtual size,
// allocated blocks, session, map u32 x N, versions u32 x N, N = 2^22): the map coloured by
// version with a legend and histogram, the paged map-entry table, and the master/local
// delta of two images with known version differences. The 32 MiB header is written
// sparse: only the entries used are touched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, tmp } from './helpers.mjs';

const BLOCK = 65536;
const N = 2 ** 22;
const H = 24 + 8 * N;
const D = Math.ceil(H / 512) * 512;
const BLOCKS = 16;
let dir, server, b;

/** blocks: [{logical, version}] in the order their data blocks were allocated. */
function gow3(path, session, blocks) {
  const fd = openSync(path, 'w');
  const pre = Buffer.alloc(24);
  pre.write('GOW3', 0, 'latin1');
  pre.writeUInt32LE(0, 4);
  pre.writeBigUInt64LE(BigInt(BLOCKS * BLOCK), 8);
  pre.writeUInt32LE(blocks.length, 16);
  pre.writeUInt32LE(session, 20);
  writeSync(fd, pre, 0, 24, 0);
  const u32 = (v, at) => {
    const x = Buffer.alloc(4);
    x.writeUInt32LE(v);
    writeSync(fd, x, 0, 4, at);
  };
  blocks.forEach(({ logical, version }, k) => {
    u32(k + 1, 24 + 4 * logical); // map: data block k
    u32(version, 24 + 4 * N + 4 * logical); // version
    writeSync(fd, Buffer.alloc(BLOCK, 0x40 + logical), 0, BLOCK, D + k * BLOCK);
  });
  closeSync(fd);
}

before(async () => {
  requireBuild();
  dir = tmp();
  // Allocation order shuffled, so the map is not the identity.
  const master = [
    { logical: 5, version: 3 }, { logical: 0, version: 1 }, { logical: 7, version: 3 }, { logical: 2, version: 2 },
    { logical: 1, version: 1 }, { logical: 6, version: 3 }, { logical: 3, version: 2 }, { logical: 4, version: 3 },
  ];
  // The local copy missed session 3's writes to blocks 6 and 7 (has them at version 2),
  // and wrote block 9 on its own.
  const local = master.map((x) => (x.logical === 6 || x.logical === 7 ? { ...x, version: 2 } : x)).concat([{ logical: 9, version: 1 }]);
  gow3(join(dir, 'master.gow'), 3, master);
  gow3(join(dir, 'local.gow'), 3, local);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

test('GOW3: versions on the map with a histogram, the entry table, and the master/local delta', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', [join(dir, 'master.gow'), join(dir, 'local.gow')]);
  await p.waitForSelector('#view[data-ready="true"]');
  assert.equal(await p.textContent('#image-name'), 'master.gow');
  assert.equal(await p.isVisible('#map-modes'), true);

  // Versions mode: the histogram counts blocks per version.
  await p.click('#mode-versions');
  await p.waitForSelector('#versions-panel:not([hidden]) .hist-bar');
  const hist = await p.$$eval('.hist-bar', (bs) => bs.map((x) => [Number(x.dataset.version), Number(x.dataset.blocks)]));
  assert.deepEqual(hist, [[0, 8], [1, 2], [2, 2], [3, 4]]);
  assert.equal(await p.isVisible('#legend'), false);

  // The entry table: data block 2 is logical block 7 (the third allocated).
  await p.waitForSelector('#entries tbody tr');
  assert.equal(await p.$$eval('#entries tbody tr', (t) => t.length), BLOCKS);
  await p.selectOption('#entries-mode', 'data-block');
  await p.fill('#entries-value', '2');
  await p.press('#entries-value', 'Enter');
  await p.waitForFunction(() => document.querySelectorAll('#entries tbody tr').length === 1);
  const row = await p.$$eval('#entries tbody tr td', (tds) => tds.map((t) => t.textContent));
  assert.equal(row[0], '7');
  assert.match(row[3], new RegExp(`^${(D + 2 * 65536).toLocaleString('en-US')}`));
  assert.equal(row[4], '3');
  await p.screenshot({ path: '/tmp/shots/gow-versions.png', fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1500 } });

  // Delta: blocks 6 and 7 are newer on the master.
  await p.selectOption('#delta-master', 'master.gow');
  await p.selectOption('#delta-local', 'local.gow');
  await p.click('#delta-run');
  await p.waitForSelector('#delta-result:not([hidden])');
  const s = await p.$eval('#delta-summary strong', (x) => ({ blocks: x.dataset.blocks, bytes: x.dataset.bytes }));
  assert.deepEqual(s, { blocks: '2', bytes: String(2 * BLOCK) });
  const [download] = await Promise.all([p.waitForEvent('download'), p.click('#delta-export')]);
  const json = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(json['master-newer'].blocks, 2);
  assert.deepEqual(json['master-newer'].runs.map((r) => [r['first-block'], r.blocks, r['master-version'], r['local-version']]), [[6, 2, 3, 2]]);
  assert.equal(json['local-only'].blocks, 1);
  await p.screenshot({ path: '/tmp/shots/gow-delta.png', fullPage: true, clip: { x: 0, y: 500, width: 1280, height: 1200 } });
  await p.emulateMedia({ colorScheme: 'dark' });
  await p.screenshot({ path: '/tmp/shots/gow-delta-dark.png', fullPage: true, clip: { x: 0, y: 500, width: 1280, height: 1200 } });
  assert.deepEqual(errors, []);
  await p.context().close();
});
