// A decoding worker of an export fails (web/decode-pool.js): a trap in its wasm, an error
// no handler catches in it (as when the worker dies), or an error from the core on a
// damaged compressed cluster. The export fails with a message naming the guest offset, the
// pool's workers are stopped, and the page goes on: another image opens and exports.
// `?decoder-fail=HOW@GUEST` (tests only) makes the decoder asked for guest byte GUEST fail.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readFileSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { alertShown, browser, page, requireBuild, serve, sh, tmp } from './helpers.mjs';

const MiB = 1024 * 1024;
let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  // 16 MiB of text as zlib clusters: four 4 MiB chunks to decode.
  const text = Buffer.alloc(16 * MiB);
  for (let i = 0, at = 0; at < text.length; i++) at += text.write(`${i} line of text for the decoders\n`, at, 'latin1');
  writeFileSync(join(dir, 't.raw'), text);
  sh('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', 't.raw', 't.qcow2'], dir);
  // The same with 4 KiB of 0xff over compressed clusters (the metadata sits in the first
  // 256 KiB; the clusters fill the rest of the file).
  writeFileSync(join(dir, 'bad.qcow2'), readFileSync(join(dir, 't.qcow2')));
  const fd = openSync(join(dir, 'bad.qcow2'), 'r+');
  writeSync(fd, Buffer.alloc(4096, 0xff), 0, 4096, statSync(join(dir, 'bad.qcow2')).size - 200000);
  closeSync(fd);
  sh('qemu-img', ['create', '-q', '-f', 'qed', 'next.qed', '16M'], dir);
  sh('qemu-io', ['-c', 'write -P 4 4M 1M', 'next.qed'], dir);
  sh('qemu-img', ['convert', '-O', 'raw', 'next.qed', 'next.raw'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});


const cases = [
  { name: 'a trap in its wasm', query: `decoder-fail=trap@${8 * MiB}`, file: 't.qcow2', want: /^The guest bytes at offset 8,388,608 could not be decoded \(decoder [12] of 2\): it hit an internal error \(a bug/ },
  { name: 'an uncaught error (the worker fails)', query: `decoder-fail=uncaught@${8 * MiB}`, file: 't.qcow2', want: /^The guest bytes at offset 8,388,608 could not be decoded \(decoder [12] of 2\): the worker failed: .*uncaught failure the test asked for/ },
  { name: 'a damaged compressed cluster', query: '', file: 'bad.qcow2', want: /^The guest bytes at offset [\d,]+ could not be decoded \(decoder [12] of 2\): qcow2: the compressed cluster for guest offset 0x[0-9a-f]+ .* cannot be decoded/ },
];

for (const c of cases) {
  test(`a decoder failing with ${c.name} fails the export with the guest offset; the page goes on`, async () => {
    const errors = [];
    const p = await page(b, errors);
    await p.goto(`${server.url}?decoders=2&${c.query}`);
    await p.setInputFiles('#file-input', [join(dir, c.file)]);
    await p.waitForSelector('#export-path[data-path="memory"]');
    let downloads = 0;
    p.on('download', () => downloads++);
    await p.click('#export-btn');
    const shown = await alertShown(p, 60000);
    assert.equal(shown.title, 'Could not convert');
    assert.match(shown.message, c.want);
    await p.waitForSelector('#export-progress', { state: 'hidden' });
    assert.equal(await p.$eval('#export-btn', (x) => x.disabled), false);
    for (let i = 0; i < 100 && p.workers().length > 1; i++) await p.waitForTimeout(100);
    assert.equal(p.workers().length, 1, 'the failed export stopped its decoders; the inspector stays');
    assert.equal(downloads, 0);

    // The same inspector opens and exports the next image.
    await p.setInputFiles('#file-input', [join(dir, 'next.qed')]);
    await p.waitForFunction(() => document.getElementById('image-name').textContent === 'next.qed');
    await p.waitForSelector('#export-path[data-path="references"]');
    const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
    assert.ok(readFileSync(await download.path()).equals(readFileSync(join(dir, 'next.raw'))));
    // The only errors are the failure's own: the panic's log line or the worker's error.
    assert.deepEqual(errors.filter((e) => !/failure the test asked for|diskscope panicked|unreachable/.test(e)), []);
    await p.context().close();
  });
}
