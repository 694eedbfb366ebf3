// qcow2 snapshots on the page: listed (id, name, size, date, VM clock), a snapshot's view
// opened, and its Download raw byte-identical with `qemu-img convert -l snapshot.name=…`.
// The host-file map is drawn with its legend. A snapshot whose clusters are compressed is
// exported by a pool of decoding workers, each of which must open that snapshot too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, sh, tmp } from './helpers.mjs';

let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  sh('qemu-img', ['create', '-f', 'qcow2', 's.qcow2', '4M'], dir);
  sh('qemu-io', ['-c', 'write -P 0x11 0 1M', 's.qcow2'], dir);
  sh('qemu-img', ['snapshot', '-c', 'before', 's.qcow2'], dir);
  sh('qemu-io', ['-c', 'write -P 0x22 512k 1M', '-c', 'write -P 0x33 3M 64k', 's.qcow2'], dir);
  sh('qemu-img', ['snapshot', '-c', 'after', 's.qcow2'], dir);
  sh('qemu-io', ['-c', 'write -z 0 256k', 's.qcow2'], dir);
  sh('qemu-img', ['convert', '-l', 'snapshot.name=before', '-O', 'raw', 's.qcow2', 'before.raw'], dir);
  sh('qemu-img', ['convert', '-O', 'raw', 's.qcow2', 'current.raw'], dir);
  // 8 MiB of compressed clusters in the snapshot 'old', overwritten (uncompressed) since.
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'c.qcow2', '16M'], dir);
  sh('qemu-io', ['-c', 'write -q -c -P 0x44 0 8M', 'c.qcow2'], dir);
  sh('qemu-img', ['snapshot', '-c', 'old', 'c.qcow2'], dir);
  sh('qemu-io', ['-c', 'write -q -P 0x55 0 8M', 'c.qcow2'], dir);
  sh('qemu-img', ['convert', '-l', 'snapshot.name=old', '-O', 'raw', 'c.qcow2', 'old.raw'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

test('qcow2 snapshots: listed, a snapshot opened, its raw download matches qemu-img; host map drawn', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(server.url);
  await p.setInputFiles('#file-input', join(dir, 's.qcow2'));
  await p.waitForSelector('#view[data-ready="true"]');
  const snaps = await p.$$eval('#snapshots tbody tr', (trs) => trs.map((tr) => [tr.dataset.id, tr.dataset.name, tr.children[2].textContent]));
  assert.deepEqual(snaps, [['1', 'before', '4 MiB'], ['2', 'after', '4 MiB']]);
  // The host map, with data and metadata in its legend.
  await p.waitForSelector('#hostmap-card:not([hidden]) #hostmap-legend li');
  const hostClasses = await p.$$eval('#hostmap-legend li', (lis) => lis.map((li) => li.dataset.class));
  for (const c of ['header', 'L1 table', 'L2 table', 'refcount table', 'data']) assert.ok(hostClasses.includes(c), hostClasses.join());
  await p.screenshot({ path: '/tmp/shots/snapshots-current.png', fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1400 } });

  const current = await p.$eval('#legend li[data-class="data"]', (li) => li.dataset.bytes);
  await p.click('#snapshots tr[data-name="before"] .snap-open');
  await p.waitForFunction(() => !document.getElementById('snapshot-banner').hidden && document.getElementById('view').dataset.ready === 'true');
  assert.match(await p.textContent('#snapshot-banner'), /before/);
  await p.waitForFunction((c) => document.querySelector('#legend li[data-class="data"]').dataset.bytes !== c, current);
  assert.equal(await p.$eval('#legend li[data-class="data"]', (li) => li.dataset.bytes), String(1 << 20));
  const [download] = await Promise.all([p.waitForEvent('download'), p.click('#export-btn')]);
  assert.match(download.suggestedFilename(), /before/);
  const got = readFileSync(await download.path());
  assert.ok(got.equals(readFileSync(join(dir, 'before.raw'))), 'the snapshot download differs from qemu-img convert -l');
  await p.screenshot({ path: '/tmp/shots/snapshots-before.png', fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1400 } });

  // Back to the current disk (keyboard).
  await p.focus('#snapshot-back');
  await p.keyboard.press('Enter');
  await p.waitForFunction(() => document.getElementById('snapshot-banner').hidden && document.getElementById('view').dataset.ready === 'true');
  const [d2] = await Promise.all([p.waitForEvent('download'), p.click('#export-btn')]);
  assert.ok(readFileSync(await d2.path()).equals(readFileSync(join(dir, 'current.raw'))));
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('a snapshot with compressed clusters downloads the same with a pool of decoders', async () => {
  const errors = [];
  const p = await page(b, errors);
  await p.goto(`${server.url}?decoders=2`);
  await p.setInputFiles('#file-input', join(dir, 'c.qcow2'));
  await p.waitForSelector('#view[data-ready="true"]');
  await p.click('#snapshots tr[data-name="old"] .snap-open');
  await p.waitForFunction(() => !document.getElementById('snapshot-banner').hidden && document.getElementById('view').dataset.ready === 'true');
  await p.waitForSelector('#export-path[data-path="memory"]');
  const [download] = await Promise.all([p.waitForEvent('download'), p.click('#export-btn')]);
  assert.ok(readFileSync(await download.path()).equals(readFileSync(join(dir, 'old.raw'))), 'the snapshot download differs from qemu-img convert -l');
  assert.equal(await p.$eval('#export-status', (x) => x.dataset.decoders), '2');
  assert.deepEqual(errors, []);
  await p.context().close();
});
