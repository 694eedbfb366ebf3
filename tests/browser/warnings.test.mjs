// The warnings banner: what a support engineer must see first, for qcow2 images made with
// qemu-img (zstd-compressed, LUKS-encrypted); Download raw is refused for encrypted data.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, sh, tmp } from './helpers.mjs';

let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  const raw = Buffer.alloc(4 << 20);
  for (let i = 0; i < raw.length; i += 4096) raw.write(`block ${i} `.repeat(40), i, 'latin1');
  writeFileSync(join(dir, 'src.raw'), raw);
  sh('qemu-img', ['convert', '-f', 'raw', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'z.qcow2'], dir);
  sh('qemu-img', ['create', '-f', 'qcow2', '--object', 'secret,id=s0,data=x', '-o', 'encrypt.format=luks,encrypt.key-secret=s0', 'e.qcow2', '1M'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

const codes = (p) => p.$$eval('#warnings-list li', (lis) => lis.map((li) => li.dataset.code));

test('zstd-compressed qcow2: the banner names zstd and compressed clusters first', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', join(dir, 'z.qcow2'));
  await p.waitForSelector('#view[data-ready="true"]');
  assert.equal(await p.isVisible('#warnings'), true);
  const c = await codes(p);
  assert.ok(c.includes('zstd'), c.join());
  assert.ok(c.includes('compressed-clusters'), c.join());
  const text = await p.textContent('#warnings');
  assert.match(text, /zstd/);
  assert.match(text, /compressed clusters/i);
  // The banner comes before the summary.
  const first = await p.evaluate(() => document.querySelector('#view > :not([hidden])').id);
  assert.equal(first, 'warnings');
  assert.equal(await p.isDisabled('#export-btn'), false);
  await p.screenshot({ path: '/tmp/shots/warnings-zstd.png', fullPage: false });
  await p.emulateMedia({ colorScheme: 'dark' });
  await p.screenshot({ path: '/tmp/shots/warnings-zstd-dark.png', fullPage: false });
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('encrypted qcow2: the banner says the data is encrypted and Download raw is refused', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', join(dir, 'e.qcow2'));
  await p.waitForSelector('#view[data-ready="true"]');
  const c = await codes(p);
  assert.equal(c[0], 'encrypted', c.join());
  assert.match(await p.textContent('#warnings'), /data is encrypted: cannot convert/i);
  assert.equal(await p.isDisabled('#export-btn'), true);
  assert.match(await p.textContent('#export-status'), /encrypted: diskscope cannot convert it/);
  // The header is still shown.
  assert.ok((await p.$$('#headers tr[data-field]')).length > 5);
  await p.screenshot({ path: '/tmp/shots/warnings-encrypted.png', fullPage: true });
  assert.deepEqual(errors, []);
  await p.context().close();
});
