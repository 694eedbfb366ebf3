// The allocation map at scale: a 32 GiB qcow2 (524,288 clusters) is drawn at two clusters
// a cell; zooming in (button, wheel, keys) asks the worker for the window alone at one
// cluster a cell; dragging and paging pan it; the keyboard cursor and a click give the
// cluster's host offset as qemu-img map gives it, and the details box asks the hex view for
// those bytes; a finding's guest range is pointed at; one layer can be shown alone; a cell
// of more runs than the hover box and the details list counts the rest as qemu-img maps them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, cellPoint, page, requireBuild, serve, sh, shot, tmp } from './helpers.mjs';

const KiB = 1024;
const GiB = 1024 ** 3;
const CS = 64 * KiB;
const AT = 20 * GiB + 3 * CS; // the one written cluster
let dir, server, b, hostOffset;

before(async () => {
  requireBuild();
  dir = tmp();
  const img = join(dir, 'big.qcow2');
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', img, '32G']);
  sh('qemu-io', ['-c', `write -P 0xab ${AT} 64k`, img]);
  const map = JSON.parse(sh('qemu-img', ['map', '--output=json', img]));
  hostOffset = map.find((e) => e.data && e.start <= AT && AT < e.start + e.length).offset;
  // 512-byte clusters, every other one written over the first 64 KiB: a cell of a 4 GiB
  // disk holds tens of runs, each of one cluster.
  const fine = join(dir, 'fine.qcow2');
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', fine, '4G']);
  sh('qemu-io', Array.from({ length: 64 }, (_, i) => ['-c', `write -P ${i + 1} ${i * 1024} 512`]).flat().concat(fine));
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

/** A fresh page with `file` of the test folder open and its map drawn. */
async function opened(file) {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', join(dir, file));
  await p.waitForSelector('#view[data-ready="true"]');
  return { p, errors };
}

const ds = (p) => p.$eval('#map', (c) => ({ ...c.dataset }));

async function waitZoom(p, z) {
  await p.waitForFunction((z) => document.querySelector('#map').dataset.zoom === String(z), z);
  return ds(p);
}

test('zoom, pan, keyboard cursor and pinned details on a 32 GiB qcow2', async () => {
  const { p, errors } = await opened('big.qcow2');
  let d = await ds(p);
  assert.equal(Number(d.cellBytes), 2 * CS, 'more clusters than cells: two a cell');
  assert.equal(Number(d.zoom), 0);
  const heightBefore = await p.$eval('#legend', (l) => l.getBoundingClientRect().top);

  // Button: half the disk, one cluster a cell, the written cluster's half.
  await p.focus('#map');
  for (let i = 0; i < 20; i++) await p.keyboard.press('ArrowDown'); // move the cursor down the disk
  await p.click('#map-zoom-in');
  d = await waitZoom(p, 1);
  assert.equal(Number(d.cellBytes), CS);
  assert.equal(Number(d.cells) * CS, 16 * GiB);
  assert.match(await p.textContent('#map-window'), /16 GiB, 50 % of the disk/);
  assert.equal(await p.$eval('#legend', (l) => l.getBoundingClientRect().top), heightBefore, 'the legend does not move');

  // Wheel over the written cluster zooms around it.
  await p.evaluate(() => document.querySelector('#map-zoom-reset').click());
  d = await waitZoom(p, 0);
  const far = await cellPoint(p, AT);
  await p.mouse.move(far.x, far.y);
  await p.mouse.wheel(0, -100);
  d = await waitZoom(p, 1);
  assert.ok(Number(d.start) <= AT && AT < Number(d.start) + Number(d.cells) * CS, 'the pointed cluster stays on show');

  // Another panel points at the cluster: the cursor goes there; '+' zooms in around it
  // until a cell is 8 px (4,096 clusters on show).
  await p.evaluate((at) => document.dispatchEvent(new CustomEvent('diskscope:show-guest', { detail: { start: at, length: 65536, label: 'test' } })), AT);
  await p.waitForFunction((at) => document.querySelector('#map').dataset.marked === `${at}+65536`, AT);
  for (let z = 2; z <= 7; z++) {
    await p.keyboard.press('+');
    d = await waitZoom(p, z);
  }
  assert.equal(Number(d.cells), 4096);
  assert.ok(Number(d.cellPx) >= 8, JSON.stringify(d));
  const pt = await cellPoint(p, AT);
  const legendTop = await p.$eval('#legend', (l) => l.getBoundingClientRect().top);
  await p.mouse.move(pt.x, pt.y);
  await p.waitForFunction(() => /stored in big\.qcow2/.test(document.querySelector('#hover').textContent));
  assert.equal(await p.$eval('#legend', (l) => l.getBoundingClientRect().top), legendTop, 'hovering does not move the legend');
  assert.match(await p.textContent('#hover'), new RegExp(`at byte ${hostOffset.toLocaleString('en-US')} `));

  // Click pins the details; its button asks the hex view for the cluster's bytes.
  await p.evaluate(() => {
    window.shown = [];
    document.addEventListener('diskscope:show-bytes', (e) => window.shown.push(e.detail));
  });
  await p.mouse.click(pt.x, pt.y);
  await p.waitForSelector('#map-details:not([hidden]) .show-bytes');
  assert.match(await p.textContent('#map-details-title'), new RegExp(`Guest 0x${AT.toString(16)}–`));
  await p.click('#map-details .show-bytes');
  const shown = await p.evaluate(() => window.shown);
  assert.deepEqual(shown.map((s) => [s.file, s.offset, s.length]), [['big.qcow2', hostOffset, 4096]]);
  // Its metadata: the cluster's L2 entry, whose bytes in the file point at the data.
  await p.waitForSelector('#map-details [data-field^="L2 entry"] .show-field');
  assert.match(await p.textContent('#map-details [data-field^="L2 entry"]'), new RegExp(`data at byte ${hostOffset} of the file`));
  await p.click('#map-details [data-field^="L2 entry"] .show-field');
  const entry = (await p.evaluate(() => window.shown)).at(-1);
  assert.equal(entry.length, 8);
  const raw = readFileSync(join(dir, 'big.qcow2')).subarray(entry.offset, entry.offset + 8);
  assert.equal(Number(raw.readBigUInt64BE() & 0x00fffffffffffe00n), hostOffset, 'the entry holds the host offset');
  await p.focus('#map');
  await p.keyboard.press('Escape');
  assert.equal(await p.isHidden('#map-details'), true);

  // Drag: pulling the map up by three rows shows three rows further on; no click.
  d = await ds(p);
  const before = Number(d.start);
  const box = await p.locator('#map').boundingBox();
  const px = Number(d.cellPx);
  await p.mouse.move(box.x + 50, box.y + 10 * px + 2);
  await p.mouse.down();
  await p.mouse.move(box.x + 50, box.y + 8 * px + 2, { steps: 4 });
  await p.mouse.move(box.x + 50, box.y + 7 * px + 2, { steps: 2 });
  await p.mouse.up();
  await p.waitForFunction((s) => Number(document.querySelector('#map').dataset.start) !== s, before);
  d = await ds(p);
  assert.equal(Number(d.start), before + 3 * Number(d.cols) * CS);
  assert.equal(await p.isHidden('#map-details'), true, 'a drag is not a click');

  // Keys: PageDown pans by a window, '-' and '0' zoom out.
  await p.focus('#map');
  const start7 = Number(d.start);
  await p.keyboard.press('PageDown');
  await p.waitForFunction((s) => Number(document.querySelector('#map').dataset.start) !== s, start7);
  d = await ds(p);
  assert.equal(Number(d.start), start7 + 4096 * CS);
  await p.keyboard.press('-');
  await waitZoom(p, 6);
  await p.keyboard.press('0');
  await waitZoom(p, 0);

  // Zoomed in elsewhere, a range pointed at by another panel brings the window to it.
  await p.click('#map-zoom-in');
  await waitZoom(p, 1);
  await p.evaluate((at) => document.dispatchEvent(new CustomEvent('diskscope:show-guest', { detail: { start: at, length: 65536, label: 'test' } })), 30 * GiB);
  await p.waitForFunction((at) => document.querySelector('#map').dataset.marked === `${at}+65536`, 30 * GiB);
  await p.waitForFunction((at) => {
    const m = document.querySelector('#map').dataset;
    return Number(m.start) <= at && at < Number(m.start) + Number(m.cells) * Number(m.cellBytes);
  }, 30 * GiB);
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('a cell of many runs: the hover box and the details list the first, and count the rest as qemu-img maps them', async () => {
  const { p, errors } = await opened('fine.qcow2');
  const d = await ds(p);
  const cell = Number(d.cellBytes);
  const runs = JSON.parse(sh('qemu-img', ['map', '--output=json', '--start-offset=0', `--max-length=${cell}`, join(dir, 'fine.qcow2')]));
  assert.ok(runs.length >= 16 && runs.every((r) => r.length === 512), `a cell of ${cell} bytes holds one run a cluster: ${runs.length}`);

  const first = await cellPoint(p, 0);
  await p.mouse.move(first.x, first.y);
  await p.waitForFunction(() => /more runs in this cell/.test(document.querySelector('#hover').textContent));
  const hover = await p.$$eval('#hover .where', (w) => w.map((x) => x.textContent));
  assert.equal(hover.length, 5, hover.join('\n'));
  assert.match(hover[0], /^0x0 \+512 bytes stored in fine\.qcow2 at byte /);
  assert.match(hover[1], /^0x200 \+512 bytes not allocated anywhere/);
  assert.equal(hover[4], `…and ${runs.length - 4} more runs in this cell`);

  await p.mouse.click(first.x, first.y);
  await p.waitForSelector('#map-details:not([hidden]) .details-runs li');
  await p.waitForFunction(() => /more runs in this cell/.test(document.querySelector('#map-details-body').textContent));
  const listed = await p.$$eval('#map-details-body > .details-runs:first-child > li', (li) => li.map((x) => x.textContent));
  assert.equal(listed.length, 9, listed.join('\n'));
  for (let i = 0; i < 8; i++) {
    const r = runs[i];
    assert.ok(listed[i].startsWith(`0x${r.start.toString(16)} +512 bytes ${r.data ? `stored in fine.qcow2 at byte ${r.offset.toLocaleString('en-US')}` : 'not allocated'}`), `${listed[i]} is ${JSON.stringify(r)}`);
  }
  assert.equal(listed[8], `…and ${runs.length - 8} more runs in this cell; zoom in to see them one by one`);
  await shot(p, 'many-runs');
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('a layer alone: the qcow2 demo without its backing file', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(`${server.url}#demo=qcow2`);
  await p.waitForSelector('#view[data-ready="true"][data-demo="qcow2"]');
  const legend = () => p.$$eval('#legend li', (li) => Object.fromEntries(li.map((x) => [x.dataset.class, Number(x.dataset.bytes)])));
  const merged = await legend();
  assert.ok(merged['backing-1'] > 0);
  await p.selectOption('#map-layer', '0');
  await p.waitForFunction(() => /alone/.test(document.querySelector('#map-window').textContent));
  const alone = await legend();
  assert.equal(alone['backing-1'], undefined, 'nothing comes from the backing file');
  assert.equal(alone.unallocated, merged.unallocated + merged['backing-1']);
  assert.equal(alone.data, merged.data);
  await p.selectOption('#map-layer', '1');
  await p.waitForFunction(() => /base\.raw alone/.test(document.querySelector('#map-window').textContent));
  const base = await legend();
  assert.equal(base.data, 3 * 1024 * 1024, 'the raw file is all data');
  assert.deepEqual(errors, []);
  await p.context().close();
});
