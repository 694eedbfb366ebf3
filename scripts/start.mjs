#!/usr/bin/env node
// Build the web side, then serve dist/site on 127.0.0.1 and say where the single file is.
//   node scripts/start.mjs [--no-build] [--port N]     (PORT=N works too; default 8080,
//   or the next free port if that one is taken)
// Also exports `serveStatic(dir, port)` for the browser tests.
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** A small static file server for `dir` on 127.0.0.1 (GET and HEAD only, nothing outside
 * `dir`). Resolves to the listening server; port 0 picks a free port. */
export function serveStatic(dir, port = 0) {
  const base = resolve(dir);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(base, path));
    if (file !== base && !file.startsWith(base + sep)) {
      res.writeHead(403).end();
      return;
    }
    let st;
    try {
      st = statSync(file);
    } catch {
      st = null;
    }
    if (!st || !st.isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[extname(file)] || 'application/octet-stream',
      'Content-Length': st.size,
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', fail);
      ok(server);
    });
  });
}

async function main() {
  const args = process.argv.slice(2);
  const portArg = args.indexOf('--port');
  const wanted = Number(portArg >= 0 ? args[portArg + 1] : process.env.PORT || 8080);
  if (!args.includes('--no-build')) {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-web.mjs')], { stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status || 1);
  }
  const siteDir = join(root, 'dist', 'site');
  if (!existsSync(join(siteDir, 'index.html'))) {
    console.error('dist/site/index.html is missing: run `npm run build` first');
    process.exit(1);
  }
  let server;
  for (let port = wanted; port < wanted + 20; port++) {
    try {
      server = await serveStatic(siteDir, port);
      break;
    } catch (err) {
      if (err.code !== 'EADDRINUSE') throw err;
    }
  }
  if (!server) server = await serveStatic(siteDir, 0);
  const { port } = server.address();
  console.log('');
  console.log(`diskscope is at  http://127.0.0.1:${port}/`);
  console.log(`single file:     ${pathToFileURL(join(root, 'dist', 'diskscope.html')).href}`);
  console.log('                 (open it from disk, or copy it anywhere: it works offline)');
  console.log('Press Ctrl+C to stop.');
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
