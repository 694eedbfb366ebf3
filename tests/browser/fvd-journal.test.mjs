// FVD journal on the page: a variant-C image (DECISIONS.md section 1, offsets from the
// seed's FvdHeader) not shut down cleanly, whose journal sets bitmap bits. The records are
// listed, and the map differs between "replayed" (the default) and "as stored".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, tmp } from './helpers.mjs';

const KiB = 1024;
const BLOCK = 64 * KiB;
const VSIZE = 16 * BLOCK;
const HEADER = 8192;
const BITMAP = HEADER; // 4096 bytes
const JOURNAL = BITMAP + 4096; // 4096 bytes = 8 sectors
const DATA = JOURNAL + 4096;
const BITMAP_JRECORD = 0x3f2ab8ed;
let dir, server, b;

function fvd() {
  const h = Buffer.alloc(DATA);
  const u32 = (v, at) => h.writeUInt32LE(v, at);
  const u64 = (v, at) => h.writeBigUInt64LE(BigInt(v), at);
  h.write('FVD\0', 0, 'latin1');
  u32(HEADER, 4); // header_size
  u32(1, 8); // create_version
  u32(2, 12); // last_open_version
  u64(VSIZE, 16); // virtual_disk_size
  u64(DATA, 24); // data_offset
  h.write('base.raw', 1072, 'latin1'); // base_img
  h.write('raw', 2096, 'latin1'); // base_img_fmt
  u64(VSIZE, 2112); // base_img_size
  u64(BITMAP, 2120); // bitmap_offset
  u64(4096, 2128); // bitmap_size
  u64(BLOCK, 2136); // block_size
  u64(JOURNAL, 2144); // journal_offset
  u64(4096, 2152); // journal_size
  u32(0, 2160); // clean_shutdown = 0: the journal must be replayed
  u64(0, 2164); // stable_journal_epoch
  u64(100 << 20, 2212); // storage_grow_unit
  // Bitmap as stored: block 0 is in the FVD data, the rest in the base image.
  h[BITMAP] = 0b0000_0001;
  // The journal: one bitmap record moving blocks 4..7 to the FVD data (sectors of 512).
  u32(BITMAP_JRECORD, JOURNAL);
  u32((4 * BLOCK) / 512, JOURNAL + 4); // num_dirty_sectors
  u64((4 * BLOCK) / 512, JOURNAL + 8); // dirty_sector_begin
  const data = Buffer.alloc(VSIZE, 0xdd);
  return Buffer.concat([h, data]);
}

before(async () => {
  requireBuild();
  dir = tmp();
  writeFileSync(join(dir, 't.fvd'), fvd());
  writeFileSync(join(dir, 'base.raw'), Buffer.alloc(VSIZE, 0xbb));
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

const mapOf = (p) => p.evaluate(() => {
  const c = document.getElementById('map');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] * 7 + d[i + 1] * 3 + d[i + 2]) >>> 0;
  return h;
});
const legend = (p) => p.$$eval('#legend li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.class, Number(li.dataset.bytes)])));

test('FVD journal: records listed; the map replayed and as stored differ', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', [join(dir, 't.fvd'), join(dir, 'base.raw')]);
  await p.waitForSelector('#view[data-ready="true"]');
  assert.equal(await p.isVisible('#records-card'), true);
  const rows = await p.$$eval('#records tbody tr', (trs) => trs.map((tr) => ({ status: tr.dataset.status, text: tr.textContent })));
  assert.equal(rows.length, 1);
  assert.equal(rows[0].status, 'applied');
  assert.match(rows[0].text, /bitmap/i);
  assert.equal(await p.getAttribute('#records-replayed', 'aria-pressed'), 'true');
  assert.ok((await p.$$eval('#warnings-list li', (l) => l.map((x) => x.dataset.code))).includes('not-shut-down-cleanly'));
  const replayed = await legend(p);
  const replayedMap = await mapOf(p);
  assert.equal(replayed.data, 5 * BLOCK, JSON.stringify(replayed));
  await p.screenshot({ path: '/tmp/shots/fvd-replayed.png', fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1250 } });

  await p.focus('#records-stored');
  await p.keyboard.press('Enter'); // keyboard reachable
  await p.waitForFunction(() => document.getElementById('records-stored').getAttribute('aria-pressed') === 'true' && document.getElementById('view').dataset.ready === 'true');
  await p.waitForFunction(() => [...document.querySelectorAll('#legend li')].some((li) => li.dataset.class === 'data' && li.dataset.bytes === String(65536)));
  const stored = await legend(p);
  assert.equal(stored.data, BLOCK, JSON.stringify(stored));
  assert.notEqual(await mapOf(p), replayedMap);
  assert.equal(await p.$eval('#records tbody tr', (tr) => tr.dataset.status), 'pending');
  await p.screenshot({ path: '/tmp/shots/fvd-stored.png', fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1250 } });

  await p.click('#records-replayed');
  await p.waitForFunction(() => document.getElementById('records-replayed').getAttribute('aria-pressed') === 'true' && document.getElementById('view').dataset.ready === 'true');
  await p.waitForFunction(() => [...document.querySelectorAll('#legend li')].some((li) => li.dataset.class === 'data' && li.dataset.bytes === String(5 * 65536)));
  assert.equal(await mapOf(p), replayedMap);
  assert.deepEqual(errors, []);
  await p.context().close();
});
