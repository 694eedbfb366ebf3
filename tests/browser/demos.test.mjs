// Demo mode: the gallery lists a sample of every format, and `#demo=NAME` has the core
// write that sample in the worker and opens it, in the served page and in the offline
// single file (file://). Each opens whole: its format, a complete chain, a map with data
// and something else, no findings worse than a note, and no error in page or worker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';
import { browser, page, requireBuild, serve, single } from './helpers.mjs';

let server, b;

before(async () => {
  requireBuild();
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

// The format badge each demo must show (the driver's name, as the report prints it).
const FORMAT = { gow1: 'GOW', 'raw-cow': 'RAW-COW', vpc: 'VPC' };

async function openDemo(p, base, name) {
  await p.goto(`${base}#demo=${name}`);
  await p.waitForSelector(`#view[data-ready="true"][data-demo="${name}"]`);
  return {
    badge: await p.textContent('#format-badge'),
    banner: await p.textContent('#demo-banner'),
    chainBreak: await p.$eval('#chain', (c) => c.dataset.break),
    legend: await p.$$eval('#legend li', (li) => Object.fromEntries(li.map((x) => [x.dataset.class, Number(x.dataset.bytes)]))),
    severities: await p.$$eval('#warnings-list [data-severity]', (w) => w.map((x) => x.dataset.severity)),
    unused: await p.$eval('#unused', (u) => (u.hidden ? '' : u.textContent)),
    warningsHidden: await p.$eval('#warnings', (w) => w.hidden),
  };
}

test('the gallery lists a demo of every format, and each opens whole', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.waitForSelector('.demo-link');
  const names = await p.$$eval('.demo-link', (a) => a.map((x) => x.dataset.demo));
  for (const f of ['qcow2', 'qed', 'qcow', 'vmdk', 'vpc', 'vhdx', 'vdi', 'parallels', 'fvd', 'gow', 'gow1', 'add-cow', 'cow', 'raw-cow']) {
    assert.ok(names.includes(f), `the gallery has ${f}: ${names.join(', ')}`);
  }
  for (const name of names) {
    const r = await openDemo(p, server.url, name);
    const want = FORMAT[name] || name.toUpperCase();
    assert.ok(r.badge.startsWith(want), `${name}: badge ${r.badge}`);
    assert.match(r.banner, /Sample: /, name);
    assert.equal(r.chainBreak, '', `${name}: the chain is whole`);
    const data = r.legend.data || 0;
    const total = Object.values(r.legend).reduce((a, x) => a + x, 0);
    assert.ok(data > 0 && data < total, `${name}: some data, not only data: ${JSON.stringify(r.legend)}`);
    assert.ok(!r.severities.some((s) => s === 'corruption' || s === 'warning'), `${name}: warnings ${r.severities}`);
    assert.equal(r.unused, '', `${name}: every file of the sample is used`);
  }
  // Choosing from the gallery itself: a link, by keyboard.
  await p.goto(server.url);
  await p.waitForSelector('.demo-link');
  await p.focus('.demo-link[data-demo="vdi"]');
  await p.keyboard.press('Enter');
  await p.waitForSelector('#view[data-ready="true"][data-demo="vdi"]');
  assert.match(await p.textContent('#format-badge'), /^VDI/);
  // Closing forgets the demo: a reload shows the empty page again.
  await p.click('#close-btn');
  assert.equal(new URL(p.url()).hash, '');
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('single file (file://): a demo opens, and an unknown one is a clear error', async () => {
  const errors = [];
  const p = await page(b, errors);
  const r = await openDemo(p, pathToFileURL(single).href, 'qcow2');
  assert.match(r.badge, /^QCOW2/);
  assert.ok(r.legend.compressed > 0 && r.legend['backing-1'] > 0 && r.legend.zero > 0, JSON.stringify(r.legend));
  await p.goto(`${pathToFileURL(single).href}#demo=nosuch`);
  await p.waitForSelector('#alert:not([hidden])');
  assert.match(await p.textContent('#alert'), /no demo called 'nosuch'.*qcow2/);
  assert.deepEqual(errors, []);
  await p.context().close();
});
