#!/usr/bin/env node
// Take the README's screenshots of the map, the chain and the gallery into docs/, from the
// built page (`npm run build` first) driven by headless Chromium, with images made by
// qemu-img and the core's own samples: `node scripts/screenshots.mjs`.
import { join } from 'node:path';
import { browser, page, root, serve, sh, tmp } from '../tests/browser/helpers.mjs';

const docs = join(root, 'docs');
const GiB = 1024 ** 3;
const dir = tmp();
sh('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '64M'], dir);
sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'mid.qcow2', '64M'], dir);
sh('qemu-io', ['-c', 'write -P 1 0 4M', '-c', 'write -P 2 32M 2M', 'mid.qcow2'], dir);
sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2', '64M'], dir);
sh('qemu-io', ['-c', 'write -P 3 1M 1M', '-c', 'write -z 40M 4M', 'top.qcow2'], dir);
sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'big.qcow2', '32G'], dir);
const writes = [];
for (let g = 0; g < 32; g += 3) writes.push('-c', `write -P ${g + 1} ${g * GiB + (g % 5) * 256 * 1024 ** 2} ${64 + g * 16}M`);
sh('qemu-io', [...writes, 'big.qcow2'], dir);

const server = await serve();
const b = await browser();
const shots = [];
async function clip(p, selector, name) {
  const path = join(docs, name);
  await p.locator(selector).screenshot({ path });
  shots.push(path);
}

try {
  const errors = [];
  // The gallery on the empty page.
  let p = await page(b, errors);
  await p.setViewportSize({ width: 1100, height: 900 });
  await p.goto(server.url);
  await p.waitForSelector('.demo-link');
  await clip(p, '#gallery', 'screenshot-gallery.png');

  // A 32 GiB disk, zoomed in to 64 MiB at the end of a run of data, a cell's details pinned.
  await p.setInputFiles('#file-input', join(dir, 'big.qcow2'));
  await p.waitForSelector('#view[data-ready="true"]');
  await p.evaluate((at) => document.dispatchEvent(new CustomEvent('diskscope:show-guest', { detail: { start: at, length: 1 } })), 12 * GiB + 512 * 1024 ** 2 + 232 * 1024 ** 2);
  for (let z = 1; z <= 9; z++) {
    await p.keyboard.press('+');
    await p.waitForFunction((z) => document.querySelector('#map').dataset.zoom === String(z), z);
  }
  await p.keyboard.press('Enter');
  await p.waitForSelector('#map-details:not([hidden]) .show-bytes');
  await p.evaluate(() => document.activeElement.blur());
  await clip(p, 'section[aria-labelledby="map-title"]', 'screenshot-map-zoom.png');

  // The qcow2 sample in the dark scheme, whole.
  await p.context().close();
  const ctx = await b.newContext({ viewport: { width: 1100, height: 1100 }, colorScheme: 'dark' });
  p = await ctx.newPage();
  await p.goto(`${server.url}#demo=qcow2`);
  await p.waitForSelector('#view[data-ready="true"][data-demo="qcow2"]');
  await clip(p, 'section[aria-labelledby="map-title"]', 'screenshot-map-dark.png');
  await ctx.close();

  // A chain of three with its last file missing, in a light page.
  p = await page(b, errors);
  await p.setViewportSize({ width: 1100, height: 900 });
  await p.goto(server.url);
  await p.setInputFiles('#file-input', [join(dir, 'top.qcow2'), join(dir, 'mid.qcow2')]);
  await p.waitForSelector('#view[data-ready="true"]');
  await clip(p, 'section[aria-labelledby="chain-title"]', 'screenshot-chain.png');
  await p.context().close();
  if (errors.length) throw new Error(errors.join('\n'));
  console.log(shots.join('\n'));
} finally {
  await b.close();
  await server.close();
}
