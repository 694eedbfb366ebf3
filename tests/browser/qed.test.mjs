// The page end to end on QED, served on localhost and as the offline single file:
// open a QED with its raw backing file, see its header and map (totals checked against
// qemu-img map), download the raw image (checked byte for byte against qemu-img convert),
// a text file's error, and a missing backing file added afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, hoverGuest, page, requireBuild, serve, sh, shot, single, tmp } from './helpers.mjs';

let dir, server, b;
const M = 1024 * 1024;

before(async () => {
  requireBuild();
  dir = tmp();
  // A base written everywhere (the browser cannot see a raw file's holes, qemu-img can),
  // a QED over it with data, zero clusters and untouched ranges, and a tail past the base.
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '24M'], dir);
  sh('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 16M', '-c', 'write -P 8 16M 8M', 'base.raw'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qed', '-o', 'cluster_size=65536', '-b', 'base.raw', '-F', 'raw', 'top.qed', '40M'], dir);
  sh('qemu-io', ['-c', 'write -P 9 1M 3M', '-c', 'write -z 6M 2M', '-c', 'write -P 5 20M 100k', '-c', 'write -P 6 33M 1M', 'top.qed'], dir);
  sh('qemu-img', ['convert', '-O', 'raw', 'top.qed', 'expected.raw'], dir);
  writeFileSync(join(dir, 'notes.txt'), 'This is not a disk image.\n'.repeat(50));
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

/** Bytes per legend class as the page shows them, from qemu-img map's runs. */
function expectedTotals() {
  const runs = JSON.parse(sh('qemu-img', ['map', '--output=json', 'top.qed'], dir));
  const t = {};
  for (const r of runs) {
    const key = r.depth === 1 ? 'backing-1' : r.data ? 'data' : r.present ? 'zero' : 'unallocated';
    t[key] = (t[key] || 0) + r.length;
  }
  return t;
}

async function legend(p) {
  return p.$$eval('#legend li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.class, Number(li.dataset.bytes)]).filter(([, n]) => n > 0)));
}

for (const where of ['served', 'single file']) {
  test(`${where}: a QED with its backing file shows its header, chain and map, and downloads as qemu-img converts it`, async () => {
    const errors = [];
    const p = await page(b, errors);
    await p.goto(where === 'served' ? server.url : `file://${single}`);
    await p.setInputFiles('#file-input', [join(dir, 'top.qed'), join(dir, 'base.raw')]);
    await p.waitForSelector('#view:not([hidden])');
    await p.waitForSelector('#legend li');
    assert.equal(await p.textContent('#image-name'), 'top.qed');
    assert.match(await p.textContent('#format-badge'), /QED/);
    const headers = await p.textContent('#headers');
    for (const field of ['magic', 'cluster_size', 'l1_table_offset', 'image_size', 'backing file name', '"base.raw"']) {
      assert.ok(headers.includes(field), `header table lacks ${field}`);
    }
    assert.match(await p.textContent('#view'), /base\.raw/);
    assert.deepEqual(await legend(p), expectedTotals());

    // Hover: the page asks the worker where a cell lives and names the file and offset.
    const hostOf = (guest) => JSON.parse(sh('qemu-img', ['map', '--output=json', 'top.qed'], dir))
      .find((r) => r.start <= guest && guest < r.start + r.length);
    for (const [guest, file] of [[1 * M, 'top.qed'], [12 * M, 'base.raw']]) {
      await hoverGuest(p, guest);
      const r = hostOf(guest);
      const host = r.offset + (guest - r.start);
      await p.waitForFunction(([f, h]) => document.getElementById('hover').textContent.includes(`stored in ${f} at byte ${h.toLocaleString('en-US')}`),
        [file, host], { timeout: 5000 });
    }
    await hoverGuest(p, 6 * M);
    await p.waitForFunction(() => /zeros, defined by top\.qed/.test(document.getElementById('hover').textContent));
    await hoverGuest(p, 1 * M);
    await shot(p, `qed-${where.replace(' ', '-')}`);

    const [download] = await Promise.all([p.waitForEvent('download'), p.click('#export-btn')]);
    assert.equal(download.suggestedFilename(), 'top.raw');
    const got = readFileSync(await download.path());
    const want = readFileSync(join(dir, 'expected.raw'));
    assert.equal(got.length, want.length, 'raw size');
    assert.ok(got.equals(want), 'the downloaded raw image differs from qemu-img convert -O raw');
    assert.deepEqual(errors, []);
    await p.context().close();
  });

  test(`${where}: a text file gets a clear message and the page stays usable`, async () => {
    const errors = [];
    const p = await page(b, errors);
    await p.goto(where === 'served' ? server.url : `file://${single}`);
    await p.setInputFiles('#file-input', join(dir, 'notes.txt'));
    await p.waitForSelector('#alert:not([hidden])');
    const alert = await p.textContent('#alert');
    assert.match(alert, /not a disk image/i, alert);
    assert.match(alert, /notes\.txt/, 'the message lists what was dropped');
    await shot(p, `error-${where.replace(' ', '-')}`);
    // Another file can be opened after the error.
    await p.setInputFiles('#file-input', [join(dir, 'top.qed'), join(dir, 'base.raw')]);
    await p.waitForSelector('#legend li');
    assert.equal(await p.textContent('#image-name'), 'top.qed');
    assert.deepEqual(errors, []);
    await p.context().close();
  });

  test(`${where}: a missing backing file is named, and adding it completes the chain without starting over`, async () => {
    const errors = [];
    const p = await page(b, errors);
    await p.goto(where === 'served' ? server.url : `file://${single}`);
    await p.setInputFiles('#file-input', join(dir, 'top.qed'));
    await p.waitForSelector('.add-missing');
    assert.match(await p.textContent('#view'), /base\.raw/);
    assert.match(await p.textContent('.add-missing'), /Add base\.raw/);
    const before = await legend(p);
    assert.ok(before.missing > 0, `the map shows what needs the missing file: ${JSON.stringify(before)}`);
    await shot(p, `missing-${where.replace(' ', '-')}`);
    await p.setInputFiles('#add-input', join(dir, 'base.raw'));
    await p.waitForFunction(() => !document.querySelector('.add-missing'));
    await p.waitForFunction(() => [...document.querySelectorAll('#legend li')].some((li) => li.dataset.class === 'backing-1'));
    assert.deepEqual(await legend(p), expectedTotals());
    assert.match(await p.textContent('#chain'), /base\.raw/);
    assert.deepEqual(errors, []);
    await p.context().close();
  });
}

/** Drop files on the page as a person would (Playwright cannot drag real files, so the
 * drop carries in-memory copies; a dropped File behaves as a picked one). */
async function drop(p, paths) {
  const files = paths.map((path) => ({ name: path.split('/').pop(), b64: readFileSync(path).toString('base64') }));
  const dt = await p.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name));
    return dt;
  }, files);
  await p.dispatchEvent('body', 'dragenter', { dataTransfer: dt });
  assert.equal(await p.isVisible('#drop-overlay'), true, 'dragging files over the page shows where to drop');
  await p.dispatchEvent('body', 'dragover', { dataTransfer: dt });
  await p.dispatchEvent('body', 'drop', { dataTransfer: dt });
}

test('files dropped anywhere on the page open; a missing backing file can be dropped in afterwards', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'small-base.raw', '2M'], dir);
  sh('qemu-io', ['-f', 'raw', '-c', 'write -P 3 0 2M', 'small-base.raw'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qed', '-b', 'small-base.raw', '-F', 'raw', 'small.qed', '2M'], dir);
  sh('qemu-io', ['-c', 'write -P 4 64k 64k', 'small.qed'], dir);
  await drop(p, [join(dir, 'notes.txt')]);
  await p.waitForSelector('#alert:not([hidden])');
  assert.match(await p.textContent('#alert'), /notes\.txt/);
  await drop(p, [join(dir, 'small.qed')]);
  await p.waitForSelector('.add-missing');
  assert.match(await p.textContent('.add-missing'), /Add small-base\.raw/);
  assert.equal(await p.isVisible('#alert'), false, 'the earlier error is gone');
  await drop(p, [join(dir, 'small-base.raw')]);
  await p.waitForFunction(() => !document.querySelector('.add-missing'));
  await p.waitForFunction(() => [...document.querySelectorAll('#legend li')].some((li) => li.dataset.class === 'backing-1'));
  assert.equal(await p.textContent('#image-name'), 'small.qed');
  const legend = await p.$$eval('#legend li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.class, Number(li.dataset.bytes)])));
  assert.equal(legend.data, 64 * 1024);
  assert.equal(legend['backing-1'], 2 * M - 64 * 1024);
  assert.deepEqual(errors, []);
  await p.context().close();
});
