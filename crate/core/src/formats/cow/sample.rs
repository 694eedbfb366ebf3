//! cow and raw-cow headers written from the spec tables (FORMATS.md 4.2-4.3, DECISIONS.md 3)
//! as the tests write them, and the demo samples.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{vec, vec::Vec};

use super::Layout;
use crate::samples::{text, Demo, Sample};

/// Header bytes for `layout`, with the fields where the spec table puts them.
pub(super) fn header(layout: Layout, backing: &str, raw: &str, size: u64) -> Vec<u8> {
    let g = layout.geometry();
    let mut h = vec![0u8; g.header];
    h[0..4].copy_from_slice(&0x4F4F_4F4Du32.to_be_bytes());
    h[4..8].copy_from_slice(&2u32.to_be_bytes());
    h[8..8 + backing.len()].copy_from_slice(backing.as_bytes());
    if let Some(at) = g.raw_file {
        h[at..at + raw.len()].copy_from_slice(raw.as_bytes());
    }
    h[g.mtime..g.mtime + 4].copy_from_slice(&1_311_033_600u32.to_be_bytes());
    h[g.size..g.size + 8].copy_from_slice(&size.to_be_bytes());
    h[g.sectorsize..g.sectorsize + 4].copy_from_slice(&512u32.to_be_bytes());
    h
}

pub static DEMO: Demo = Demo {
    name: "cow",
    title: "cow (User-Mode Linux) over a raw backing file",
    about: "One bit per 512-byte sector: a set bit means the sector is in this file's data area, a clear one that it reads from base.raw.",
    qemu: None,
    build: || sample(Layout::Cow64),
};

pub static DEMO_RAW: Demo = Demo {
    name: "raw-cow",
    title: "raw-cow: a bitmap over a separate raw data file",
    about: "The bitmap says which sectors are valid in data.raw; the others read from base.raw.",
    qemu: None,
    build: || sample(Layout::RawCow64),
};

/// A 1 MiB disk with a few runs of sectors written over a shorter raw backing file.
fn sample(layout: Layout) -> Sample {
    let size = 1u64 << 20;
    let sectors = size / 512;
    let mut img = header(layout, "base.raw", "data.raw", size);
    let h = img.len();
    img.resize(h + sectors.div_ceil(8) as usize, 0);
    let data_start = (img.len() as u64).next_multiple_of(512) as usize;
    let mut data = vec![0u8; size as usize];
    for (first, count) in [(0u64, 96u64), (300, 40), (1024, 256), (1900, 8)] {
        for s in first..first + count {
            img[h + (s / 8) as usize] |= 1 << (s % 8);
        }
        let bytes = text(&alloc::format!("cow sample, sectors {} to {}", first, first + count - 1), (count * 512) as usize);
        data[(first * 512) as usize..((first + count) * 512) as usize].copy_from_slice(&bytes);
    }
    let base = text("raw backing file of the cow sample", 768 << 10);
    if layout.raw_cow() {
        Sample::new([("sample.rawcow", img), ("data.raw", data), ("base.raw", base)])
    } else {
        img.resize(data_start, 0);
        img.extend_from_slice(&data);
        Sample::new([("sample.cow", img), ("base.raw", base)])
    }
}
