// Images for the export tests: one of every format diskscope reads, small, made with
// qemu-img where QEMU writes the format and laid out from DECISIONS.md where it does not,
// and the raw image the CLI's convert makes of each (the reference the page must match).
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { root, sh } from './helpers.mjs';
import { CHUNK, VSIZE, fvdImage } from './fvd-writer.mjs';

const KiB = 1024;
const MiB = 1024 * KiB;

export const cli = join(process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target'), 'release', 'diskscope');

export function requireCli() {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`cargo build --release -p diskscope\` first (npm test does)`);
}

/** An 8 MiB disk: random MiBs (incompressible), patterned MiBs (compressible), zero MiBs. */
export function sourceRaw(dir) {
  const buf = Buffer.alloc(8 * MiB);
  randomBytes(MiB).copy(buf, 0);
  buf.fill(0x5a, 2 * MiB, 3 * MiB);
  randomBytes(512 * KiB).copy(buf, 4 * MiB + 64 * KiB);
  for (let i = 6 * MiB; i < 7 * MiB; i += 4096) buf.write(`sector ${i}\n`, i, 'latin1');
  writeFileSync(join(dir, 'src.raw'), buf);
  return join(dir, 'src.raw');
}

/** GOW3 (DECISIONS.md section 4): 16 blocks of 64 KiB, blocks 1, 5 and 6 stored. */
function gow3(path) {
  const BLOCK = 64 * KiB;
  const N = 2 ** 22;
  const D = Math.ceil((24 + 8 * N) / 512) * 512;
  const head = Buffer.alloc(D);
  head.write('GOW3', 0, 'latin1');
  head.writeBigUInt64LE(BigInt(16 * BLOCK), 8);
  const stored = [1, 5, 6];
  head.writeUInt32LE(stored.length, 16);
  head.writeUInt32LE(1, 20);
  const data = Buffer.alloc(stored.length * BLOCK);
  stored.forEach((logical, k) => {
    head.writeUInt32LE(k + 1, 24 + 4 * logical);
    head.writeUInt32LE(1, 24 + 4 * N + 4 * logical);
    data.fill(0x40 + logical, k * BLOCK, (k + 1) * BLOCK);
  });
  writeFileSync(path, Buffer.concat([head, data]));
}

/** FVD variant C over a raw base: blocks 0, 4 and 5 in the FVD data, the rest from the base. */
function fvd(path, basePath) {
  const data = Buffer.alloc(2 * CHUNK);
  for (let i = 0; i < data.length; i += 4096) data.write(`fvd ${i}`, i, 'latin1');
  writeFileSync(path, fvdImage({ base: 'fvd-base.raw', bitmap: 0b0011_0001, chunks: [0, 1, 0xffffffff, 0xffffffff], data }));
  writeFileSync(basePath, Buffer.alloc(VSIZE, 0xbb));
}

/** FVD not shut down cleanly, its data in a raw data file, over a raw base: the bitmap has
 * block 0 in the data, and the journal's one bitmap record moves blocks 4..7 there too.
 * The page reads a layer's second file through the core, so with the journal replayed five
 * blocks are decoded bytes. */
function fvdJournal(path, dataPath, basePath) {
  const data = Buffer.alloc(VSIZE);
  for (let i = 0; i < data.length; i += 4096) data.write(`data ${i}`, i, 'latin1');
  writeFileSync(path, fvdImage({ base: 'j-base.raw', bitmap: 0b0000_0001, journal: { first: 4, count: 4 }, dataFile: 'j-data.raw', data: Buffer.alloc(0) }));
  writeFileSync(dataPath, data);
  writeFileSync(basePath, Buffer.alloc(VSIZE, 0xbb));
}

/** Every case: {name, files (top first), computed: whether some bytes must be decoded}. */
export function makeImages(dir) {
  const src = sourceRaw(dir);
  const q = (...args) => sh('qemu-img', args, dir);
  const cases = [];
  const convert = (name, fmt, opts = [], computed = false) => {
    q('convert', '-q', '-O', fmt, ...opts, src, name);
    cases.push({ name, files: [name], computed });
  };
  convert('a.qed', 'qed');
  convert('a.qcow2', 'qcow2');
  convert('zlib.qcow2', 'qcow2', ['-c'], true);
  convert('zstd.qcow2', 'qcow2', ['-c', '-o', 'compression_type=zstd'], true);
  convert('a.qcow', 'qcow');
  convert('a.vmdk', 'vmdk');
  convert('stream.vmdk', 'vmdk', ['-o', 'subformat=streamOptimized'], true);
  convert('a.vhd', 'vpc');
  convert('a.vhdx', 'vhdx');
  convert('a.vdi', 'vdi');
  convert('a.parallels', 'parallels');
  // A chain: a qcow2 overlay over a QED over the raw source.
  q('create', '-q', '-f', 'qed', '-b', 'src.raw', '-F', 'raw', 'mid.qed');
  sh('qemu-io', ['-f', 'qed', '-c', 'write -q -P 0x11 1M 64k', '-c', 'write -q -z 2M 128k', 'mid.qed'], dir);
  q('create', '-q', '-f', 'qcow2', '-b', 'mid.qed', '-F', 'qed', 'top.qcow2');
  sh('qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x22 1056k 64k', '-c', 'write -q -P 0x33 7M 4k', 'top.qcow2'], dir);
  cases.push({ name: 'top.qcow2', files: ['top.qcow2', 'mid.qed', 'src.raw'], computed: false });
  gow3(join(dir, 'a.gow3'));
  cases.push({ name: 'a.gow3', files: ['a.gow3'], computed: false });
  fvd(join(dir, 'c.fvd'), join(dir, 'fvd-base.raw'));
  cases.push({ name: 'c.fvd', files: ['c.fvd', 'fvd-base.raw'], computed: false });
  fvdJournal(join(dir, 'j.fvd'), join(dir, 'j-data.raw'), join(dir, 'j-base.raw'));
  cases.push({ name: 'j.fvd', files: ['j.fvd', 'j-data.raw', 'j-base.raw'], computed: true });
  for (const c of cases) {
    c.expected = join(dir, `${c.name}.expected.raw`);
    sh(cli, ['convert', c.name, c.expected], dir);
  }
  return cases;
}
