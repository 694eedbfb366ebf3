// The backing chain diagram: a box per file joined by arrows named as the headers name the
// files; a missing file is a dashed box with the button that adds it (and adding it
// completes the chain without starting over); a loop is marked. Also in a 400 px window,
// where the diagram stands in a column and nothing scrolls sideways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, sh, tmp } from './helpers.mjs';

let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '8M'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'mid.qcow2', '8M'], dir);
  sh('qemu-io', ['-c', 'write -P 1 0 1M', 'mid.qcow2'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2', '8M'], dir);
  sh('qemu-io', ['-c', 'write -P 2 2M 1M', 'top.qcow2'], dir);
  // A loop: a names b as its backing file, and b names a.
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'b.qcow2', '8M'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '8M'], dir);
  sh('qemu-img', ['rebase', '-u', '-b', 'a.qcow2', '-F', 'qcow2', 'b.qcow2'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

const diagram = (p) => p.$$eval('#chain > li', (li) => li.map((x) => (x.classList.contains('chain-link') ? `→ ${x.textContent}` : `[${x.className.replace('node ', '')}] ${x.querySelector('.layer-name, .node-flag')?.textContent}`)));

test('three files, the last one missing, then added; a loop', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', [join(dir, 'top.qcow2'), join(dir, 'mid.qcow2')]);
  await p.waitForSelector('#view[data-ready="true"]');
  assert.deepEqual(await diagram(p), ['[layer top] top.qcow2', '→ backed by “mid.qcow2”', '[layer] mid.qcow2', '→ backed by “base.raw”', '[missing] base.raw']);
  assert.equal(await p.$eval('#chain', (c) => c.dataset.break), 'missing');
  assert.match(await p.textContent('#chain .node.missing .add-missing'), /Add base\.raw/);
  assert.match(await p.textContent('#chain-break'), /mid\.qcow2 names “base\.raw” at byte/);
  // The button opens the file picker that adds to this chain.
  const [chooser] = await Promise.all([p.waitForEvent('filechooser'), p.click('#chain .add-missing')]);
  await chooser.setFiles(join(dir, 'base.raw'));
  await p.waitForFunction(() => document.querySelector('#chain').dataset.layers === '3');
  assert.deepEqual(await diagram(p), ['[layer top] top.qcow2', '→ backed by “mid.qcow2”', '[layer] mid.qcow2', '→ backed by “base.raw”', '[layer] base.raw']);
  assert.equal(await p.isHidden('#chain-break'), true);

  await p.setInputFiles('#file-input', [join(dir, 'a.qcow2'), join(dir, 'b.qcow2')]);
  await p.waitForFunction(() => document.querySelector('#chain').dataset.break === 'loop');
  const d = await diagram(p);
  assert.equal(d.at(-1), '[loop] ↺ loop');
  assert.match(await p.textContent('#chain .node.loop'), /is already the image/);
  assert.match(await p.textContent('#chain-break'), /The backing chain loops/);
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('400 px wide: the chain stands in a column, the map and gallery fit, nothing scrolls sideways', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.setViewportSize({ width: 400, height: 800 });
  await p.goto(server.url);
  await p.waitForSelector('.demo-link');
  const wide = () => p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.equal(await wide(), 0, 'the empty page and its gallery');
  await p.setInputFiles('#file-input', [join(dir, 'top.qcow2'), join(dir, 'mid.qcow2'), join(dir, 'base.raw')]);
  await p.waitForSelector('#view[data-ready="true"]');
  const boxes = await p.$$eval('#chain > li.node', (n) => n.map((x) => x.getBoundingClientRect().top));
  assert.ok(boxes[0] < boxes[1] && boxes[1] < boxes[2], `one below the other: ${boxes}`);
  const map = await p.locator('#map').boundingBox();
  assert.ok(map.x >= 0 && map.x + map.width <= 400, JSON.stringify(map));
  await p.click('#map', { position: { x: 3, y: 3 } });
  await p.waitForSelector('#map-details:not([hidden])');
  const details = await p.locator('#map-details').boundingBox();
  assert.ok(details.x >= 0 && details.x + details.width <= 400, JSON.stringify(details));
  assert.equal(await wide(), 0, 'the open image, details shown');
  assert.deepEqual(errors, []);
  await p.context().close();
});
