// Download raw of an image of every format diskscope reads (and a three-file chain) is
// byte-identical to the CLI's `diskscope convert` of the same image; images whose bytes
// must be decoded (compressed clusters, streamOptimized grains) say so on the page.
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
    await t.test(c.name, async () => {
      const errors = [];
      const p = await page(b, errors);
      await p.goto(server.url);
      await p.setInputFiles('#file-input', c.files.map((f) => join(dir, f)));
      await p.waitForSelector('#view[data-ready="true"]');
      await p.waitForSelector('#export-path[data-path]');
      assert.equal(await p.$eval('#export-path', (x) => x.dataset.path), c.computed ? 'memory' : 'references');
      const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60000 }), p.click('#export-btn')]);
      const got = readFileSync(await download.path());
      const want = readFileSync(c.expected);
      assert.equal(got.length, want.length, 'size');
      assert.ok(got.equals(want), `${c.name}: the download differs from diskscope convert`);
      assert.deepEqual(errors, []);
      await p.context().close();
    });
  }
});
