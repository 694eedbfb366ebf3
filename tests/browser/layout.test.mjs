// The file layout and the hex view on a QED over a raw file: the strip's totals against
// what the CLI lists (regions) and qemu-img maps (data clusters); a header field clicked
// in the diagram shows exactly its bytes of the file; bytes selected by mouse and by
// keyboard are named; a region, an offset typed in, and another file of the chain open
// where they should. The single file does the same with no server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { browser, cli, page, requireBuild, serve, sh, shot, single, tmp } from './helpers.mjs';

let dir, server, b, info, file;
const M = 1024 * 1024;

before(async () => {
  requireBuild();
  dir = tmp();
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '16M'], dir);
  sh('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 16M', 'base.raw'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qed', '-o', 'cluster_size=65536', '-b', 'base.raw', '-F', 'raw', 'top.qed', '40M'], dir);
  sh('qemu-io', ['-c', 'write -P 9 1M 3M', '-c', 'write -z 6M 2M', '-c', 'write -P 6 33M 1M', 'top.qed'], dir);
  info = JSON.parse(sh(cli(), ['info', '--json', 'top.qed'], dir));
  file = readFileSync(join(dir, 'top.qed'));
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

async function open(p, url) {
  await p.goto(url);
  await p.setInputFiles('#file-input', [join(dir, 'top.qed'), join(dir, 'base.raw')]);
  await p.waitForSelector('#legend li');
  // The strip's data runs arrive after the regions.
  await p.waitForSelector('#strip-legend li[data-kind="data"]');
}

/** The highlighted bytes as the hex view shows them, once every visible page has loaded. */
async function highlighted(p) {
  await p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');
  return p.$$eval('#hex-grid .hex-b.hl', (els) => els.map((e) => parseInt(e.textContent, 16)));
}

test('served: the strip adds up, a header field shows its bytes, selections are named', async () => {
  const errors = [];
  const p = await page(b, errors);
  await open(p, server.url);

  // Strip totals: header and tables from the regions the CLI lists; guest data from
  // qemu-img map's host offsets in top.qed; free space is what is left of the file.
  const size = statSync(join(dir, 'top.qed')).size;
  const legend = await p.$$eval('#strip-legend li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.kind, Number(li.dataset.bytes)])));
  const regionBytes = (kind) => info.regions.filter((r) => r.kind === kind).reduce((a, r) => a + r.length, 0);
  const runs = JSON.parse(sh('qemu-img', ['map', '--output=json', 'top.qed'], dir));
  const data = runs.filter((r) => r.depth === 0 && r.data).reduce((a, r) => a + r.length, 0);
  assert.equal(legend.header, regionBytes('header'));
  assert.equal(legend.table, regionBytes('table'));
  assert.equal(legend.data, data);
  assert.equal(legend.free, size - regionBytes('header') - regionBytes('table') - data);

  // The strip from the keyboard: arrows step through the regions in file order, Enter
  // shows the bytes of the one the frame is on.
  const ordered = [...info.regions].sort((x, y) => x.offset - y.offset);
  await p.focus('#strip');
  await p.keyboard.press('ArrowRight');
  assert.match(await p.textContent('#strip-hover'), new RegExp(`^${ordered[0].name}.*region 1 of`, 'i'));
  await p.keyboard.press('ArrowRight');
  assert.match(await p.textContent('#strip-hover'), new RegExp(`^${ordered[1].name}.*region 2 of`, 'i'));
  await p.keyboard.press('Enter');
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-start')), ordered[1].offset);
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-end')), ordered[1].offset + ordered[1].length);
  await p.focus('#strip');
  await p.keyboard.press('End');
  const lastData = runs.filter((r) => r.depth === 0 && r.data).map((r) => r.offset + r.length).reduce((a, x) => Math.max(a, x), 0);
  assert.match(await p.textContent('#strip-hover'), new RegExp(`0x${(lastData - 1).toString(16)} `), 'End: the region that ends the file\'s contents');

  // A field of the diagram: the view highlights exactly its bytes of the file.
  for (const name of ['cluster_size', 'image_size', 'backing file name']) {
    const f = info['header-fields'].find((x) => x.name === name);
    await p.click(`.hd-field[data-field="${name}"]`);
    assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-start')), f.offset, name);
    assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-end')), f.offset + f.size, name);
    assert.deepEqual(await highlighted(p), [...file.subarray(f.offset, f.offset + f.size)], `${name}: the highlighted bytes are the file's`);
    assert.match(await p.textContent('#hex-label'), new RegExp(name));
    assert.equal(await p.evaluate(() => document.activeElement.id), 'hex-grid', 'the keyboard follows to the bytes');
  }
  await shot(p, 'layout-field');

  // Dragging over bytes names the field they are in.
  const l1 = info['header-fields'].find((x) => x.name === 'l1_table_offset');
  await p.click('.hd-field[data-field="magic"]');
  const cell = (off) => p.locator(`#hex-grid .hex-b[data-i="${off}"]`);
  await cell(l1.offset).hover();
  await p.mouse.down();
  await cell(l1.offset + 3).hover();
  await p.mouse.up();
  assert.match(await p.textContent('#hex-status'), /l1_table_offset/);
  assert.equal(await p.$$eval('#hex-grid .hex-b.sel', (e) => e.length), 4);

  // Keyboard: Shift+Right extends the selection into the next field.
  for (let k = 0; k < l1.size - 3; k++) await p.keyboard.press('Shift+ArrowRight');
  const next = info['header-fields'].find((x) => x.offset === l1.offset + l1.size);
  assert.match(await p.textContent('#hex-status'), new RegExp(`l1_table_offset.*${next.name}`));

  // Typing an offset in a table: the bytes are named as that table.
  const l1region = info.regions.find((r) => r.name === 'L1 table');
  await p.fill('#hex-offset', `0x${(l1region.offset + 8).toString(16)}`);
  await p.press('#hex-offset', 'Enter');
  assert.match(await p.textContent('#hex-status'), /L1 table/);
  // Bytes of guest data are named by the guest offset that reads them (qemu-img map's runs).
  for (const r of runs.filter((x) => x.depth === 0 && x.data).slice(-2)) {
    await p.fill('#hex-offset', `0x${(r.offset + 4101).toString(16)}`);
    await p.press('#hex-offset', 'Enter');
    assert.match(await p.textContent('#hex-status'), new RegExp(`guest data \\(guest offset 0x${(r.start + 4101).toString(16)}\\)`));
  }
  await p.keyboard.press('Control+End');
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-top')), Math.ceil(size / 16) * 16 - 16 * 16, 'Ctrl+End shows the last rows');
  await highlighted(p);

  // A region from the list: its first bytes highlighted.
  await p.click('#regions-count');
  const l2 = info.regions.find((r) => r.name.startsWith('L2 table'));
  await p.getByRole('button', { name: l2.name, exact: true }).click();
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-start')), l2.offset);
  // 16 rows shown, two of them context above the table: 14 rows of it highlighted.
  assert.deepEqual(await highlighted(p), [...file.subarray(l2.offset, l2.offset + 14 * 16)]);

  // The contract other views use: bytes of another file of the chain, by event.
  await p.evaluate(() => document.dispatchEvent(new CustomEvent('diskscope:show-bytes', { detail: { file: 'base.raw', offset: 12 * 1024 * 1024 + 5, length: 3, label: 'test' } })));
  assert.equal(await p.getAttribute('#hex-grid', 'data-file'), 'base.raw');
  assert.deepEqual(await highlighted(p), [7, 7, 7]);
  assert.match(await p.textContent('#hex-status'), /base\.raw/);

  // The strip of the backing file: all of it data regions, as a raw file is.
  await p.selectOption('#layout-file', '1');
  const rawLegend = await p.$$eval('#strip-legend li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.kind, Number(li.dataset.bytes)])));
  assert.equal(rawLegend.data, 16 * M);
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('single file: a field clicked shows its bytes (read in the worker, no server)', async () => {
  const errors = [];
  const p = await page(b, errors);
  p.on('request', (r) => { if (!/^(file|blob|data):/.test(r.url())) errors.push(`network: ${r.url()}`); });
  await open(p, `file://${single}`);
  const f = info['header-fields'].find((x) => x.name === 'table_size');
  await p.click(`.hd-field[data-field="${f.name}"]`);
  assert.deepEqual(await highlighted(p), [...file.subarray(f.offset, f.offset + f.size)]);
  // The strip is clickable too: the first pixel is the header.
  await p.locator('#strip').click({ position: { x: 1, y: 10 } });
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-start')), 0);
  assert.match(await p.textContent('#hex-label'), /header/i);
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('a 256 GiB file: the hex view pages through its end without reading the rest', async () => {
  const errors = [];
  const p = await page(b, errors);
  const G = 1024 * 1024 * 1024;
  sh('truncate', ['-s', String(256 * G), 'huge.raw'], dir);
  sh('qemu-io', ['-f', 'raw', '-c', `write -P 0xab ${256 * G - 4096} 4096`, 'huge.raw'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qed', '-b', 'huge.raw', '-F', 'raw', 'huge.qed', String(256 * G)], dir);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', [join(dir, 'huge.qed'), join(dir, 'huge.raw')]);
  await p.waitForSelector('#view[data-ready="true"]');
  await p.selectOption('#hex-file', 'huge.raw');
  await p.focus('#hex-grid');
  await p.keyboard.press('Control+End');
  await p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-top')), 256 * G - 256);
  const last = await p.$$eval('#hex-grid .hex-b[data-i]', (els) => els.map((e) => e.textContent));
  assert.deepEqual(last, Array(256).fill('ab'), 'the last rows are the bytes written there');
  await p.keyboard.press('PageUp');
  await p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-top')), 256 * G - 512);
  // The slider is the file's scroll bar: its last position is the last screen of rows.
  assert.equal(Number(await p.getAttribute('#hex-pos', 'max')), (256 * G) / 16 - 16);
  assert.match(await p.textContent('#hex-where'), /256 GiB/);
  assert.deepEqual(errors, []);
  await p.context().close();
});
