// A 256 GiB sparse QED opens and maps in the browser within seconds in both builds:
// as `qemu-img create -f qed x.qed 256G` makes it, and with 64 KiB written in every GiB
// (128 L2 tables to read; totals checked against qemu-img map). Prints the times (open,
// map, wall clock from picking the file to the drawn map) as diagnostics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, sh, shot, single, tmp } from './helpers.mjs';

const GiB = 1024 ** 3;
let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  sh('qemu-img', ['create', '-q', '-f', 'qed', 'x.qed', '256G'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qed', 'y.qed', '256G'], dir);
  const writes = [];
  for (let g = 0; g < 256; g++) writes.push('-c', `write -q -P ${1 + (g % 255)} ${g * GiB + (g % 7) * 65536} 64k`);
  sh('qemu-io', ['-f', 'qed', ...writes, 'y.qed'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

for (const where of ['served', 'single file']) {
  test(`${where}: a 256 GiB sparse QED opens and maps quickly`, async (t) => {
    const errors = [];
    const p = await page(b, errors);
    await p.goto(where === 'served' ? server.url : `file://${single}`);
    await p.waitForFunction(() => document.readyState === 'complete');
    const t0 = Date.now();
    await p.setInputFiles('#file-input', join(dir, 'x.qed'));
    await p.waitForSelector('#view[data-ready="true"]', { timeout: 30000 });
    const wall = Date.now() - t0;
    const { openMs, mapMs } = await p.$eval('#view', (v) => ({ ...v.dataset }));
    t.diagnostic(`256 GiB sparse QED, ${where}: open ${openMs} ms, map ${mapMs} ms (in the worker); pick to drawn map ${wall} ms`);
    assert.match(await p.textContent('[data-fact="Virtual size"]'), /256 GiB/);
    const legend = await p.$$eval('#legend li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.class, Number(li.dataset.bytes)])));
    assert.equal(legend.unallocated, 256 * GiB);
    assert.match(await p.textContent('#map-scale'), /1 cell = 1 MiB \(16 clusters\) · 1 row = 1 GiB/);
    await shot(p, `large-${where.replace(' ', '-')}`);
    assert.deepEqual(errors, []);
    await p.context().close();
  });

  test(`${where}: a 256 GiB QED with 64 KiB written in every GiB opens and maps quickly`, async (t) => {
    const errors = [];
    const p = await page(b, errors);
    await p.goto(where === 'served' ? server.url : `file://${single}`);
    await p.waitForFunction(() => document.readyState === 'complete');
    const t0 = Date.now();
    await p.setInputFiles('#file-input', join(dir, 'y.qed'));
    await p.waitForSelector('#view[data-ready="true"]', { timeout: 30000 });
    const wall = Date.now() - t0;
    const { openMs, mapMs } = await p.$eval('#view', (v) => ({ ...v.dataset }));
    t.diagnostic(`256 GiB QED, 256 x 64 KiB written, ${where}: open ${openMs} ms, map ${mapMs} ms (in the worker); pick to drawn map ${wall} ms`);
    const runs = JSON.parse(sh('qemu-img', ['map', '--output=json', 'y.qed'], dir));
    const data = runs.filter((r) => r.data).reduce((n, r) => n + r.length, 0);
    const legend = await p.$$eval('#legend li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.class, Number(li.dataset.bytes)])));
    assert.equal(legend.data, data);
    assert.equal(legend.unallocated, 256 * GiB - data);
    assert.deepEqual(errors, []);
    await p.context().close();
  });
}
