//! The FVD demo sample: a compact variant-C image (DECISIONS.md section 1 offsets) over a
//! raw base image. The tests' writer models journals and junk for every variant; a sample
//! needs none of that, so it is written here directly.
use alloc::{vec, vec::Vec};

use crate::samples::{text, Demo, Sample};

pub static DEMO: Demo = Demo {
    name: "fvd",
    title: "FVD compact image over a raw base image",
    about: "Two granularities: a bitmap bit per 64 KiB block says whether the block is in the FVD data or still in base.raw, and a table entry per 256 KiB chunk says where stored chunks are (choose 'Draw by' to see either).",
    qemu: None,
    build,
};

fn build() -> Sample {
    const KIB: u64 = 1024;
    const BLOCK: u64 = 64 * KIB;
    const CHUNK: u64 = 4 * BLOCK;
    const VSIZE: u64 = 64 * BLOCK;
    const HEADER: u64 = 8192;
    const BITMAP: u64 = HEADER;
    const TABLE: u64 = BITMAP + 4096;
    const DATA: u64 = TABLE + 4096;
    let mut h = vec![0u8; DATA as usize];
    let put = |h: &mut Vec<u8>, at: u64, v: &[u8]| h[at as usize..at as usize + v.len()].copy_from_slice(v);
    put(&mut h, 0, b"FVD\0");
    put(&mut h, 4, &(HEADER as u32).to_le_bytes()); // header_size
    put(&mut h, 16, &VSIZE.to_le_bytes()); // virtual_disk_size
    put(&mut h, 24, &DATA.to_le_bytes()); // data_offset
    put(&mut h, 1072, b"base.raw"); // base_img
    put(&mut h, 2096, b"raw"); // base_img_fmt
    put(&mut h, 2112, &VSIZE.to_le_bytes()); // base_img_size
    put(&mut h, 2120, &BITMAP.to_le_bytes()); // bitmap_offset
    put(&mut h, 2128, &4096u64.to_le_bytes()); // bitmap_size
    put(&mut h, 2136, &BLOCK.to_le_bytes()); // block_size
    put(&mut h, 2160, &1u32.to_le_bytes()); // clean_shutdown
    put(&mut h, 2188, &TABLE.to_le_bytes()); // table_offset
    put(&mut h, 2196, &4096u64.to_le_bytes()); // table_size (bytes)
    put(&mut h, 2204, &CHUNK.to_le_bytes()); // chunk_size
    for c in 0..VSIZE / CHUNK {
        put(&mut h, TABLE + 4 * c, &u32::MAX.to_le_bytes());
    }
    // Chunks get storage in the order they were first written; blocks set in the bitmap
    // read from it, the other blocks of a stored chunk still from the base image.
    let mut store: Vec<u8> = Vec::new();
    let mut stored: Vec<u64> = Vec::new();
    for b in [0u64, 1, 2, 21, 22, 40, 41, 42, 43, 63] {
        let c = b / (CHUNK / BLOCK);
        let slot = match stored.iter().position(|&x| x == c) {
            Some(i) => i as u64,
            None => {
                stored.push(c);
                store.resize(stored.len() * CHUNK as usize, 0);
                put(&mut h, TABLE + 4 * c, &((stored.len() - 1) as u32).to_le_bytes());
                stored.len() as u64 - 1
            }
        };
        h[(BITMAP + b / 8) as usize] |= 1 << (b % 8);
        let at = (slot * CHUNK + b % (CHUNK / BLOCK) * BLOCK) as usize;
        store[at..at + BLOCK as usize].copy_from_slice(&text(&alloc::format!("FVD sample, block {}", b), BLOCK as usize));
    }
    h.extend_from_slice(&store);
    Sample::new([("sample.fvd", h), ("base.raw", text("raw base image of the FVD sample", VSIZE as usize))])
}
