// The worker fails (a real trap in the wasm: a Rust panic, as a bug would be; and an
// error no handler catches, which reaches the page as the worker's onerror): the page
// says what it was doing, starts a new worker, and another file can be dropped and opens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { alertShown, browser, page, requireBuild, serve, sh, tmp } from './helpers.mjs';

let dir, server, b;

before(async () => {
  requireBuild();
  dir = tmp();
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'first.qcow2', '8M'], dir);
  sh('qemu-io', ['-c', 'write -P 3 0 1M', 'first.qcow2'], dir);
  sh('qemu-img', ['create', '-q', '-f', 'qed', 'second.qed', '16M'], dir);
  sh('qemu-io', ['-c', 'write -P 4 4M 1M', 'second.qed'], dir);
  server = await serve();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.close();
});


for (const how of ['trap', 'uncaught']) {
  test(`a worker failure (${how}) is shown with what was being done, and the page opens the next file`, async () => {
    const errors = [];
    const p = await page(b, errors);
    await p.goto(server.url);
    await p.setInputFiles('#file-input', [join(dir, 'first.qcow2')]);
    await p.waitForSelector('#view[data-ready="true"]');
    assert.equal(await p.textContent('#image-name'), 'first.qcow2');

    await p.evaluate((h) => window.dispatchEvent(new CustomEvent('diskscope:test-worker-failure', { detail: h })), how);
    const shown = await alertShown(p);
    assert.equal(shown.title, 'diskscope had to restart');
    assert.match(shown.message, how === 'trap' ? /internal error/i : /the worker failed: .*uncaught failure the test asked for/i);
    assert.match(shown.hint, /While answering 'fail'\./);

    // The new worker reopens the image that was open, then takes another file.
    await p.waitForSelector('#view[data-ready="true"]');
    await p.setInputFiles('#file-input', [join(dir, 'second.qed')]);
    await p.waitForFunction(() => document.getElementById('image-name').textContent === 'second.qed');
    await p.waitForSelector('#view[data-ready="true"]');
    assert.match(await p.textContent('#format-badge'), /QED/);
    assert.ok(await p.isHidden('#alert'), 'the failure message goes once a new file opens');
    await p.waitForFunction(() => Number(document.querySelector('#legend li[data-class="data"]')?.dataset.bytes) === 1 << 20);
    // The only errors are the failure's own: the panic's log line (trap) or the worker's error.
    const unexpected = errors.filter((e) => !/failure the test asked for|diskscope panicked|unreachable/.test(e));
    assert.deepEqual(unexpected, []);
  });
}
