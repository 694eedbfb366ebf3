// Accessibility and a person's habits: axe-core (injected here only, never shipped) finds
// no violation on the main states (empty page, an opened image, the error state, the hex
// view open) in the light and the dark colour scheme; a 400 px window has no sideways
// scrolling; the keyboard alone reaches a header field and shows its bytes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { browser, requireBuild, serve, sh, shot, tmp } from './helpers.mjs';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '8M'], dir);
  sh('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 8M', 'base.raw'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'top.qcow2', '16M'], dir);
  sh('qemu-io', ['-c', 'write -P 9 1M 256k', '-c', 'write -z 3M 64k', 'top.qcow2'], dir);
  writeFileSync(join(dir, 'notes.txt'), 'not a disk image\n'.repeat(40));
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

async function newPage({ scheme = 'light', width = 1280 } = {}) {
  const ctx = await b.newContext({ viewport: { width, height: 900 }, colorScheme: scheme, acceptDownloads: true });
  const p = await ctx.newPage();
  const errors = [];
  p.on('pageerror', (e) => errors.push(`page: ${e.message}`));
  p.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  await p.goto(server.url);
  return { p, errors };
}

async function axe(p, state) {
  await p.evaluate(axeSource);
  const r = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const found = r.violations.map((v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('\n    ')}`);
  assert.deepEqual(found, [], `axe-core on ${state}`);
}

async function opened(p) {
  await p.setInputFiles('#file-input', [join(dir, 'top.qcow2'), join(dir, 'base.raw')]);
  await p.waitForSelector('#view[data-ready="true"]');
  await p.waitForSelector('#strip-legend li[data-kind="data"]');
}

for (const scheme of ['light', 'dark']) {
  test(`${scheme}: no axe-core violation on the empty page, an image, the hex view and an error`, async () => {
    const { p, errors } = await newPage({ scheme });
    await axe(p, 'the empty page');
    await opened(p);
    await axe(p, 'an opened image');
    await p.click('.hd-field[data-field="l1_table_offset"]');
    await p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');
    await axe(p, 'the hex view open');
    await shot(p, `a11y-${scheme}`);
    await p.setInputFiles('#file-input', join(dir, 'notes.txt'));
    await p.waitForSelector('#alert:not([hidden])');
    await axe(p, 'the error state');
    assert.deepEqual(errors, []);
    await p.context().close();
  });
}

test('a 400 px window: nothing scrolls sideways, the views still work', async () => {
  const { p, errors } = await newPage({ width: 400 });
  await opened(p);
  const overflow = () => p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.equal(await overflow(), 0, 'the page is no wider than the window');
  await p.click('.hd-field[data-field="cluster_bits"]');
  await p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');
  assert.equal(await overflow(), 0, 'with the hex view open');
  const grid = await p.locator('#hex-grid').boundingBox();
  assert.ok(grid.x >= 0 && grid.x + grid.width <= 400, `the hex view fits: ${JSON.stringify(grid)}`);
  await shot(p, 'narrow');
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('the keyboard alone reaches a header field and shows its bytes', async () => {
  const { p, errors } = await newPage();
  await opened(p);
  await p.focus('#layout-title'); // the reading position; Tab goes on from there
  let reached = false;
  for (let i = 0; i < 60 && !reached; i++) {
    await p.keyboard.press('Tab');
    reached = await p.evaluate(() => document.activeElement?.dataset?.field === 'magic');
  }
  assert.ok(reached, 'Tab reaches the first field of the header diagram');
  const ring = await p.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(ring, 'none', 'the focused field shows a focus ring');
  await p.keyboard.press('Enter');
  await p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');
  assert.equal(await p.evaluate(() => document.activeElement.id), 'hex-grid');
  assert.equal(await p.getAttribute('#hex-grid', 'data-hl-start'), '0');
  await p.keyboard.press('Shift+ArrowRight');
  assert.match(await p.textContent('#hex-status'), /magic/);
  assert.deepEqual(errors, []);
  await p.context().close();
});
