// FVD journal on the page: a variant-C image (DECISIONS.md section 1, offsets from the
// seed's FvdHeader) not shut down cleanly, whose journal sets bitmap bits. The records are
// listed, and the map differs between "replayed" (the default) and "as stored".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, tmp } from './helpers.mjs';
import { BLOCK, VSIZE, fvdImage } from './fvd-writer.mjs';

let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  // As stored, block 0 is in the FVD data; the journal moves blocks 4..7 there too.
  writeFileSync(join(dir, 't.fvd'), fvdImage({ bitmap: 0b0000_0001, journal: { first: 4, count: 4 }, data: Buffer.alloc(VSIZE, 0xdd) }));
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
