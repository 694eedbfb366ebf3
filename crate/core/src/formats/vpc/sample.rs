//! VHD written from the spec's tables by the writer the tests use (fixed, dynamic, and
//! differencing with parent locators), and the demo sample made with it.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{vec, vec::Vec};

use super::footer::{at, checksum};
use crate::samples::{text, Demo, Sample};

pub(crate) struct Writer {
    pub file: Vec<u8>,
    pub block: u64,
    pub bitmap: u64,
    pub bat_at: usize,
    pub entries: usize,
    pub footer: Vec<u8>,
}

pub(crate) fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// A footer as Hyper-V writes it ("win ": the size is current_size).
pub(crate) fn footer(size: u64, disk_type: u32, data_offset: u64, uuid: [u8; 16], creator: &[u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 512];
    put(&mut f, 0, b"conectix");
    put(&mut f, at::FEATURES, &2u32.to_be_bytes());
    put(&mut f, at::VERSION, &0x0001_0000u32.to_be_bytes());
    put(&mut f, at::DATA_OFFSET, &data_offset.to_be_bytes());
    put(&mut f, at::TIMESTAMP, &0x2000_0000u32.to_be_bytes());
    put(&mut f, at::CREATOR_APP, creator);
    put(&mut f, at::CREATOR_VERSION, &0x000a_0000u32.to_be_bytes());
    put(&mut f, at::CREATOR_OS, b"Wi2k");
    put(&mut f, at::ORIGINAL_SIZE, &size.to_be_bytes());
    put(&mut f, at::CURRENT_SIZE, &size.to_be_bytes());
    // A geometry that does not match current_size: only "vpc " and "qemu" images use it.
    put(&mut f, at::CYLINDERS, &100u16.to_be_bytes());
    f[at::HEADS] = 4;
    f[at::SECTORS] = 17;
    put(&mut f, at::DISK_TYPE, &disk_type.to_be_bytes());
    put(&mut f, at::UUID, &uuid);
    let c = checksum(&f, at::CHECKSUM);
    put(&mut f, at::CHECKSUM, &c.to_be_bytes());
    f
}

pub(crate) fn fixed(data: &[u8], uuid: [u8; 16]) -> Vec<u8> {
    let mut f = data.to_vec();
    f.extend(footer(data.len() as u64, 2, u64::MAX, uuid, b"win "));
    f
}

/// A parent for a differencing writer: its UUID, its name, and the locators to store
/// (platform code and the bytes of its data).
pub(crate) struct Parent<'a> {
    pub uuid: [u8; 16],
    pub name: &'a str,
    pub locators: Vec<([u8; 4], Vec<u8>)>,
}

pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

impl Writer {
    pub fn new(size: u64, block: u64, uuid: [u8; 16], parent: Option<Parent>) -> Writer {
        let entries = size.div_ceil(block) as usize;
        let bat_at = 1536usize;
        let mut file = vec![0u8; bat_at + (entries * 4).next_multiple_of(512)];
        file[bat_at..bat_at + entries * 4].fill(0xff);
        let disk_type = if parent.is_some() { 4 } else { 3 };
        let foot = footer(size, disk_type, 512, uuid, b"win ");
        put(&mut file, 0, &foot);
        let h = 512usize;
        put(&mut file, h, b"cxsparse");
        put(&mut file, h + 8, &u64::MAX.to_be_bytes());
        put(&mut file, h + 16, &(bat_at as u64).to_be_bytes());
        put(&mut file, h + 24, &0x0001_0000u32.to_be_bytes());
        put(&mut file, h + 28, &(entries as u32).to_be_bytes());
        put(&mut file, h + 32, &(block as u32).to_be_bytes());
        if let Some(p) = parent {
            put(&mut file, h + 40, &p.uuid);
            put(&mut file, h + 56, &0x1fff_0000u32.to_be_bytes());
            let name: Vec<u8> = p.name.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
            put(&mut file, h + 64, &name);
            for (k, (code, data)) in p.locators.iter().enumerate() {
                let off = file.len();
                let space = data.len().next_multiple_of(512).max(512);
                file.resize(off + space, 0);
                put(&mut file, off, data);
                let e = h + 576 + 24 * k;
                put(&mut file, e, code);
                put(&mut file, e + 4, &(space as u32).to_be_bytes());
                put(&mut file, e + 8, &(data.len() as u32).to_be_bytes());
                put(&mut file, e + 16, &(off as u64).to_be_bytes());
            }
        }
        let c = checksum(&file[h..h + 1024], 36);
        put(&mut file, h + 36, &c.to_be_bytes());
        let bitmap = ((block / 512).div_ceil(8)).next_multiple_of(512);
        Writer { file, block, bitmap, bat_at, entries, footer: foot }
    }

    pub fn entry(&self, i: usize) -> u32 {
        u32::from_be_bytes(self.file[self.bat_at + 4 * i..self.bat_at + 4 * i + 4].try_into().unwrap())
    }
    pub fn set_entry(&mut self, i: usize, v: u32) {
        let at = self.bat_at + 4 * i;
        self.file[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Write `data` at guest offset `off` (sector-aligned, inside one block), setting the
    /// bitmap bits of the sectors written.
    pub fn write(&mut self, off: u64, data: &[u8]) {
        let i = (off / self.block) as usize;
        assert!(i < self.entries && off.is_multiple_of(512) && data.len().is_multiple_of(512));
        let mut e = self.entry(i);
        if e == u32::MAX {
            let at = self.file.len();
            self.file.resize(at + (self.bitmap + self.block) as usize, 0);
            e = (at / 512) as u32;
            self.set_entry(i, e);
        }
        let bm = e as usize * 512;
        let in_block = off % self.block;
        for s in in_block / 512..(in_block + data.len() as u64) / 512 {
            self.file[bm + (s / 8) as usize] |= 0x80 >> (s % 8);
        }
        let d = bm + self.bitmap as usize + in_block as usize;
        self.file[d..d + data.len()].copy_from_slice(data);
    }

    /// The image with its end footer.
    pub fn finish(&self) -> Vec<u8> {
        let mut f = self.file.clone();
        f.extend_from_slice(&self.footer);
        f
    }
}

pub static DEMO: Demo = Demo {
    name: "vpc",
    title: "VHD dynamic disk with partly written blocks",
    about: "Blocks allocated in the block allocation table, each with a sector bitmap: inside an allocated block, sectors whose bit is clear read as zeros.",
    qemu: Some("vpc"),
    build,
};

fn build() -> Sample {
    const BLOCK: u64 = 256 << 10;
    let mut w = Writer::new(8 << 20, BLOCK, [0x5a; 16], None);
    w.write(0, &text("VHD sample, block 0", BLOCK as usize));
    w.write(BLOCK, &text("VHD sample, block 1", 64 << 10));
    w.write(5 * BLOCK + (128 << 10), &text("VHD sample, block 5, second half", 128 << 10));
    for b in [12u64, 13, 14] {
        w.write(b * BLOCK, &text(&alloc::format!("VHD sample, block {}", b), BLOCK as usize));
    }
    Sample::new([("sample.vhd", w.finish())])
}
