// Findings and reports: a finding followed to its bytes (a missing backing file's name in
// the header; a qcow2 L2 entry whose COPIED flag disagrees with the refcount, and its guest
// range sent to the map), and the JSON report downloaded from the page byte-identical to
// `diskscope report` on the same image, the printable HTML report self-contained.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { browser, cli, page, requireBuild, serve, sh, shot, tmp } from './helpers.mjs';

let dir, server, b;

function be64(path, at) {
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(8);
  readSync(fd, buf, 0, 8, at);
  closeSync(fd);
  return buf.readBigUInt64BE();
}

function setBe64(path, at, v) {
  const fd = openSync(path, 'r+');
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64BE(v);
  writeSync(fd, buf, 0, 8, at);
  closeSync(fd);
}

before(async () => {
  requireBuild();
  dir = tmp();
  // A QED whose backing file is gone: the chain-break finding points at the name's bytes.
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'gone.raw', '4M'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qed', '-b', 'gone.raw', '-F', 'raw', 'lonely.qed', '4M'], dir);
  sh('qemu-io', ['-c', 'write -P 1 0 64k', 'lonely.qed'], dir);
  sh('rm', ['gone.raw'], dir);
  // A qcow2 with data at guest 1 MiB whose L2 entry lost its COPIED flag.
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'flag.qcow2', '4M'], dir);
  sh('qemu-io', ['-c', 'write -P 5 1M 64k', 'flag.qcow2'], dir);
  const path = join(dir, 'flag.qcow2');
  const l1 = be64(path, 40);
  const l2 = be64(path, Number(l1)) & 0x00fffffffffffe00n;
  const at = Number(l2) + 16 * 8; // 1 MiB / 64 KiB clusters = entry 16
  setBe64(path, at, be64(path, at) & ~(1n << 63n));
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

async function open(p, files) {
  await p.goto(server.url);
  await p.setInputFiles('#file-input', files.map((f) => join(dir, f)));
  await p.waitForSelector('#view[data-ready="true"]');
}

async function highlightedText(p) {
  await p.waitForFunction(() => document.getElementById('hex-grid').dataset.loaded === 'true');
  return p.$$eval('#hex-grid .hex-b.hl', (els) => String.fromCharCode(...els.map((e) => parseInt(e.textContent, 16))));
}

test('a finding leads to its bytes and to its guest range', async () => {
  const errors = [];
  const p = await page(b, errors);
  await open(p, ['lonely.qed']);
  // The missing backing file's finding: its offset opens the header bytes holding the name.
  const row = p.locator('#findings tbody tr', { hasText: 'gone.raw' }).first();
  await row.locator('button.show-bytes').click();
  assert.equal(await highlightedText(p), 'gone.raw');
  assert.match(await p.textContent('#hex-label'), /gone\.raw/);
  await shot(p, 'finding-bytes');

  await open(p, ['flag.qcow2']);
  await p.evaluate(() => {
    window.guests = [];
    document.addEventListener('diskscope:show-guest', (e) => window.guests.push(e.detail));
  });
  const flag = p.locator('#findings tbody tr[data-code="copied-flag"]').first();
  assert.equal(await flag.getAttribute('data-severity'), 'corruption');
  await flag.locator('button.show-bytes').click();
  // check exits 2 on corruption: its JSON is on stdout all the same.
  let out;
  try {
    out = sh(cli(), ['check', '--json', 'flag.qcow2'], dir);
  } catch (e) {
    out = e.stdout;
  }
  const checked = JSON.parse(out);
  const f = checked.findings.find((x) => x.code === 'copied-flag' && x.guest === 1024 * 1024);
  assert.ok(f, 'the CLI finds the same corruption');
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-start')), f.offset);
  assert.equal(Number(await p.getAttribute('#hex-grid', 'data-hl-end')), f.offset + f.length);
  await flag.locator('button.show-guest').click();
  assert.deepEqual(await p.evaluate(() => window.guests.map((g) => [g.start, g.length])), [[1024 * 1024, 65536]]);
  assert.deepEqual(errors, []);
  await p.context().close();
});

test('the JSON report is what diskscope report prints; the HTML report stands alone', async () => {
  const errors = [];
  const p = await page(b, errors);
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '8M'], dir);
  sh('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 8M', 'base.raw'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'top.qcow2', '16M'], dir);
  sh('qemu-io', ['-c', 'write -P 9 1M 256k', '-c', 'write -z 3M 64k', 'top.qcow2'], dir);
  await open(p, ['top.qcow2', 'base.raw']);
  const [json] = await Promise.all([p.waitForEvent('download'), p.click('#report-json')]);
  assert.equal(json.suggestedFilename(), 'top.diskscope.json');
  const got = readFileSync(await json.path(), 'utf8');
  // The CLI names a backing file by the path it found it at; a web page only ever learns
  // file names. Past that folder, the two must be the same bytes.
  const want = sh(cli(), ['report', 'top.qcow2'], dir).replaceAll(`${dir}/`, '');
  assert.equal(got, want, 'the page downloads exactly what `diskscope report top.qcow2` prints');
  // And each part is what the single commands print (the CLI's own schema).
  const r = JSON.parse(got);
  assert.deepEqual(r.info, JSON.parse(sh(cli(), ['info', '--json', 'top.qcow2'], dir).replaceAll(`${dir}/`, '')));
  assert.deepEqual(r.checks[0], JSON.parse(sh(cli(), ['check', '--json', 'top.qcow2'], dir)));
  assert.deepEqual(r.map, JSON.parse(sh('qemu-img', ['map', '--output=json', 'top.qcow2'], dir)));

  const [html] = await Promise.all([p.waitForEvent('download'), p.click('#report-html')]);
  assert.equal(html.suggestedFilename(), 'top.diskscope.html');
  const text = readFileSync(await html.path(), 'utf8');
  assert.doesNotMatch(text, /<script|<link|(src|href)="(?!data:)/i, 'no script and no external resource');
  assert.match(text, /<img class="map"[^>]+src="data:image\/png;base64,/);
  for (const s of ['top.qcow2', 'base.raw', 'l1_table_offset', 'Backing chain', 'Findings', 'refcount table']) assert.ok(text.includes(s), `the HTML report has ${s}`);
  // Opened on its own, it renders with no request at all.
  const q = await page(b, errors);
  const requests = [];
  q.on('request', (req) => requests.push(req.url()));
  const saved = join(dir, 'report.html'); // a download keeps no extension: give it one
  writeFileSync(saved, text);
  await q.goto(`file://${saved}`);
  assert.equal(await q.textContent('h1'), 'diskscope report: top.qcow2');
  assert.ok((await q.$$eval('img.map', (i) => i.map((x) => x.naturalWidth)))[0] > 0, 'the map picture decodes');
  await shot(q, 'report-html');
  assert.deepEqual(requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:')), []);
  await q.context().close();
  assert.deepEqual(errors, []);
  await p.context().close();
});
