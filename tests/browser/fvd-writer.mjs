// FVD images for the browser tests, written from DECISIONS.md section 1 (the offsets of the
// seed's FvdHeader): a 1 MiB disk of 64 KiB blocks over a raw base, an 8 KiB header, a
// 4 KiB bitmap, then a 4 KiB chunk table (variant C) or a 4 KiB journal, then the data.

export const KiB = 1024;
export const BLOCK = 64 * KiB;
export const CHUNK = 4 * BLOCK;
export const VSIZE = 16 * BLOCK;
const HEADER = 8192;
const BITMAP = HEADER;
const AFTER_BITMAP = BITMAP + 4096; // the chunk table or the journal
const DATA = AFTER_BITMAP + 4096;
const BITMAP_JRECORD = 0x3f2ab8ed;

/**
 * bitmap: the bitmap's first byte (bit n set: block n is in the FVD data);
 * chunks: with a table, the table's first entries (0xffffffff: not stored);
 * journal: instead of a table, one bitmap record dirtying blocks [first, first + count),
 *   and the image not shut down cleanly;
 * data: the bytes after the metadata;
 * dataFile: the name of a raw data file that holds the data instead (from its byte 0).
 */
export function fvdImage({ base = 'base.raw', bitmap, chunks, journal, data, dataFile }) {
  const h = Buffer.alloc(DATA);
  const u32 = (v, at) => h.writeUInt32LE(v, at);
  const u64 = (v, at) => h.writeBigUInt64LE(BigInt(v), at);
  h.write('FVD\0', 0, 'latin1');
  u32(HEADER, 4); // header_size
  u32(1, 8); // create_version
  u32(2, 12); // last_open_version
  u64(VSIZE, 16); // virtual_disk_size
  u64(DATA, 24); // data_offset
  if (dataFile) {
    h.write(dataFile, 32, 'latin1'); // data_file
    h.write('raw', 1056, 'latin1'); // data_file_fmt
  }
  h.write(base, 1072, 'latin1'); // base_img
  h.write('raw', 2096, 'latin1'); // base_img_fmt
  u64(VSIZE, 2112); // base_img_size
  u64(BITMAP, 2120); // bitmap_offset
  u64(4096, 2128); // bitmap_size
  u64(BLOCK, 2136); // block_size
  u64(100 << 20, 2212); // storage_grow_unit
  h[BITMAP] = bitmap;
  if (journal) {
    u64(AFTER_BITMAP, 2144); // journal_offset
    u64(4096, 2152); // journal_size
    u32(0, 2160); // clean_shutdown = 0: the journal must be replayed
    u32(BITMAP_JRECORD, AFTER_BITMAP);
    u32((journal.count * BLOCK) / 512, AFTER_BITMAP + 4); // num_dirty_sectors
    u64((journal.first * BLOCK) / 512, AFTER_BITMAP + 8); // dirty_sector_begin
  } else {
    u32(1, 2160); // clean_shutdown
    u64(AFTER_BITMAP, 2188); // table_offset
    u64(4096, 2196); // table_size (bytes)
    u64(CHUNK, 2204); // chunk_size
    chunks.forEach((c, i) => u32(c, AFTER_BITMAP + 4 * i));
  }
  return Buffer.concat([h, data]);
}
