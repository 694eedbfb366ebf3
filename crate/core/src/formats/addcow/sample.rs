//! add-cow headers written from the spec tables (DECISIONS.md 2, FORMATS.md 2.2) as the
//! tests write them, and the demo sample.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{vec, vec::Vec};

use super::header::Generation;
use crate::samples::{text, Demo, Sample};

pub(crate) fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// A header of `generation` naming `backing` (may be "") and `image`, with the bitmap area
/// sized for `clusters` bits.
pub(crate) fn header(generation: Generation, cluster_bits: u32, backing: &str, image: &str, image_fmt: &str, clusters: u64, all_allocated: bool) -> Vec<u8> {
    match generation {
        Generation::V11 => {
            let hs = 4096usize;
            let mut h = vec![0u8; hs + clusters.div_ceil(8) as usize];
            put(&mut h, 0, b"ADD_COW\xff");
            put(&mut h, 8, &1u32.to_le_bytes());
            let (bo, io) = (80u32, 80 + backing.len() as u32);
            if !backing.is_empty() {
                put(&mut h, 12, &bo.to_le_bytes());
                put(&mut h, 16, &(backing.len() as u32).to_le_bytes());
                put(&mut h, bo as usize, backing.as_bytes());
                put(&mut h, 48, b"raw");
            }
            put(&mut h, 20, &io.to_le_bytes());
            put(&mut h, 24, &(image.len() as u32).to_le_bytes());
            put(&mut h, io as usize, image.as_bytes());
            let feat = (!backing.is_empty()) as u64 | 2 | if all_allocated { 4 } else { 0 };
            put(&mut h, 28, &feat.to_le_bytes());
            put(&mut h, 44, &1u32.to_le_bytes());
            put(&mut h, 64, image_fmt.as_bytes());
            h
        }
        Generation::Acow => {
            let hs = (1usize << cluster_bits).max(4096);
            let mut h = vec![0u8; hs + (clusters.div_ceil(8) as usize).next_multiple_of(1 << cluster_bits)];
            put(&mut h, 0, b"ACOW");
            let (bo, io) = (76u32, 76 + backing.len() as u32);
            if !backing.is_empty() {
                put(&mut h, 4, &bo.to_le_bytes());
                put(&mut h, 8, &(backing.len() as u32).to_le_bytes());
                put(&mut h, bo as usize, backing.as_bytes());
                put(&mut h, 44, b"raw");
            }
            put(&mut h, 12, &io.to_le_bytes());
            put(&mut h, 16, &(image.len() as u32).to_le_bytes());
            put(&mut h, io as usize, image.as_bytes());
            put(&mut h, 20, &cluster_bits.to_le_bytes());
            put(&mut h, 32, &(all_allocated as u64).to_le_bytes());
            put(&mut h, 40, &(hs as u32).to_le_bytes());
            put(&mut h, 60, image_fmt.as_bytes());
            h
        }
    }
}

pub static DEMO: Demo = Demo {
    name: "add-cow",
    title: "add-cow: a bitmap naming an image file and a backing file",
    about: "One bit per 64 KiB cluster: a set bit reads the cluster from the image file disk.raw, a clear one from the backing file base.raw.",
    qemu: None,
    build,
};

fn build() -> Sample {
    const CS: u64 = 64 << 10;
    let clusters = 64u64;
    let mut img = header(Generation::V11, 16, "base.raw", "disk.raw", "", clusters, false);
    let mut raw = vec![0u8; (clusters * CS) as usize];
    for c in [0u64, 1, 2, 10, 11, 30, 31, 32, 33, 63] {
        img[4096 + (c / 8) as usize] |= 1 << (c % 8);
        let bytes = text(&alloc::format!("add-cow sample, cluster {} in the image file", c), CS as usize);
        raw[(c * CS) as usize..((c + 1) * CS) as usize].copy_from_slice(&bytes);
    }
    Sample::new([("sample.acow", img), ("disk.raw", raw), ("base.raw", text("raw backing file of the add-cow sample", 3 << 20))])
}
