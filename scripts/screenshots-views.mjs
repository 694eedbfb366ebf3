#!/usr/bin/env node
// Remake the README's screenshots of the layout, hex and findings views:
//   npm run build && node scripts/screenshots-views.mjs (npm run screenshots takes them all)
// Images are made with qemu-img in a temporary folder (a qcow2 over a raw file, one of its
// L2 entries damaged so the check has a finding to follow); the page is the served build,
// driven by headless Chromium; the PNGs go to docs/.
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { browser, requireBuild, root, serve, sh, tmp } from '../tests/browser/helpers.mjs';

requireBuild();
const dir = tmp();
sh('qemu-img', ['create', '-q', '-f', 'raw', 'ubuntu-base.raw', '64M'], dir);
sh('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 48M', 'ubuntu-base.raw'], dir);
sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'ubuntu-base.raw', '-F', 'raw', 'vm-disk.qcow2', '64M'], dir);
sh('qemu-io', ['-c', 'write -P 9 1M 2M', '-c', 'write -z 6M 1M', '-c', 'write -P 5 20M 512k', '-c', 'write -P 6 40M 3M', 'vm-disk.qcow2'], dir);

// Clear the COPIED flag of the L2 entry for guest 1 MiB: a corruption qemu-img check reports too.
const path = join(dir, 'vm-disk.qcow2');
const fd = openSync(path, 'r+');
const u64 = (at) => {
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, at);
  return b.readBigUInt64BE();
};
const l2 = u64(Number(u64(40))) & 0x00fffffffffffe00n;
const at = Number(l2) + 16 * 8;
const b = Buffer.alloc(8);
b.writeBigUInt64BE(u64(at) & ~(1n << 63n));
writeSync(fd, b, 0, 8, at);
closeSync(fd);

const server = await serve();
const chrome = await browser();
const ctx = await chrome.newContext({ viewport: { width: 1100, height: 900 }, colorScheme: 'light' });
const p = await ctx.newPage();
await p.goto(server.url);
await p.setInputFiles('#file-input', [path, join(dir, 'ubuntu-base.raw')]);
await p.waitForSelector('#strip-legend li[data-kind="data"]');
const loaded = () => p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');

await p.hover('#strip-zoom', { position: { x: 300, y: 10 } });
// The strip, its legend and the first rows of the header diagram.
const card = await p.$eval('#layout-card', (e) => {
  const r = e.getBoundingClientRect();
  return { x: r.left + scrollX, y: r.top + scrollY, width: r.width };
});
await p.screenshot({ path: join(root, 'docs/screenshot-layout.png'), fullPage: true, clip: { ...card, height: 620 } });

await p.click('.hd-field[data-field="l1_table_offset"]');
await loaded();
for (let i = 0; i < 11; i++) await p.keyboard.press('Shift+ArrowRight');
await p.locator('#bytes-card').screenshot({ path: join(root, 'docs/screenshot-hex.png') });

await p.locator('#findings tbody tr[data-code="copied-flag"] button.show-bytes').first().click();
await loaded();
const check = await p.locator('#check-title').locator('xpath=..');
await check.screenshot({ path: join(root, 'docs/screenshot-findings.png') });

await chrome.close();
await server.close();
console.log('wrote docs/screenshot-layout.png, docs/screenshot-hex.png, docs/screenshot-findings.png');
