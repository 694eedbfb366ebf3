// Download raw of an image of every format diskscope reads (and a three-file chain) is
// byte-identical to the CLI's `diskscope convert` of the same image; images whose bytes
// must be decoded (compressed clusters, streamOptimized grains, an FVD data file with its
// journal replayed) say so on the page, and are exported with their decoded bytes made by
// one worker (?decoders=1, the inspector itself), by this machine's default pool of decoding
// workers and by a pool of three, each time equal to the CLI's output.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { browser, page, requireBuild, serve, tmp } from './helpers.mjs';
import { makeImages, requireCli } from './export-images.mjs';

let dir, server, b, cases;

before(async () => {
  requireBuild();
  requireCli();
  dir = tmp();
  cases = makeImages(dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});

test('Download raw of every format equals the CLI convert output', async (t) => {
  for (const c of cases) {
    for (const query of c.computed ? ['?decoders=1', '', '?decoders=3'] : ['']) {
    await t.test(`${c.name}${query}`, async () => {
      const errors = [];
      const p = await page(b, errors);
      await p.goto(`${server.url}${query}`);
      await p.setInputFiles('#file-input', c.files.map((f) => join(dir, f)));
      await p.waitForSelector('#view[data-ready="true"]');
      await p.waitForSelector('#export-path[data-path]');
      assert.equal(await p.$eval('#export-path', (x) => x.dataset.path), c.computed ? 'memory' : 'references');
      const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
      const got = readFileSync(await download.path());
      const want = readFileSync(c.expected);
      assert.equal(got.length, want.length, 'size');
      assert.ok(got.equals(want), `${c.name}: the download differs from diskscope convert`);
      if (c.computed) {
        // As many decoders as asked for, fewer only when there are fewer chunks to share.
        const asked = query ? Number(query.split('=')[1]) : await p.evaluate(() => Math.min(navigator.hardwareConcurrency, 4));
        const used = Number(await p.$eval('#export-status', (x) => x.dataset.decoders));
        if (asked === 1) assert.equal(used, 1);
        else assert.ok(used >= 2 && used <= asked, `${used} decoders for ${asked} asked`);
        assert.match(await p.textContent('#export-status'), used === 1 ? /decoded in memory by one worker/ : new RegExp(`decoded in memory by ${used} workers in parallel`));
      }
      assert.deepEqual(errors, []);
      await p.context().close();
    });
    }
  }
});
