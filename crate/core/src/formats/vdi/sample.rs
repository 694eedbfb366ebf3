//! VDI written from the header layout by the writer the tests use, and the demo sample.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{vec, vec::Vec};

use super::header::*;
use super::{DISCARDED, UNALLOCATED};
use crate::samples::{Demo, Sample};

pub(crate) struct Writer {
    pub file: Vec<u8>,
    pub block: u64,
    pub allocated: u32,
}

impl Writer {
    /// A VDI 1.1 image as QEMU's vdi_co_do_create lays it out: header, map at 512, data
    /// after the map rounded to a sector.
    pub fn new(size: u64, block: u64, image_type: u32, uuid: [u8; 16], link: Option<[u8; 16]>) -> Writer {
        let blocks = size.div_ceil(block) as u32;
        let bmap_bytes = (blocks as usize * 4).next_multiple_of(512);
        let mut file = vec![0u8; 512 + bmap_bytes];
        let text = b"<<< diskscope test VDI >>>\n";
        file[..text.len()].copy_from_slice(text);
        let put = |f: &mut Vec<u8>, at: usize, v: &[u8]| f[at..at + v.len()].copy_from_slice(v);
        put(&mut file, at::SIGNATURE, &SIGNATURE.to_le_bytes());
        put(&mut file, at::VERSION, &VERSION_1_1.to_le_bytes());
        put(&mut file, at::HEADER_SIZE, &0x180u32.to_le_bytes());
        put(&mut file, at::IMAGE_TYPE, &image_type.to_le_bytes());
        put(&mut file, at::OFFSET_BMAP, &512u32.to_le_bytes());
        put(&mut file, at::OFFSET_DATA, &(512 + bmap_bytes as u32).to_le_bytes());
        put(&mut file, at::SECTOR_SIZE, &512u32.to_le_bytes());
        put(&mut file, at::DISK_SIZE, &size.to_le_bytes());
        put(&mut file, at::BLOCK_SIZE, &(block as u32).to_le_bytes());
        put(&mut file, at::BLOCKS_IN_IMAGE, &blocks.to_le_bytes());
        put(&mut file, at::UUID_IMAGE, &uuid);
        if let Some(l) = link {
            put(&mut file, at::UUID_LINK, &l);
        }
        let mut w = Writer { file, block, allocated: 0 };
        for i in 0..blocks {
            w.set_entry(i, UNALLOCATED);
        }
        if image_type == TYPE_FIXED {
            for i in 0..blocks {
                w.set_entry(i, i);
            }
            w.allocated = blocks;
            let len = w.file.len() + (blocks as u64 * block) as usize;
            w.file.resize(len, 0);
            w.sync_allocated();
        }
        w
    }
    pub fn data_offset(&self) -> u64 {
        u32::from_le_bytes(self.file[at::OFFSET_DATA..at::OFFSET_DATA + 4].try_into().unwrap()) as u64
    }
    pub fn entry(&self, i: u32) -> u32 {
        let at = 512 + i as usize * 4;
        u32::from_le_bytes(self.file[at..at + 4].try_into().unwrap())
    }
    pub fn set_entry(&mut self, i: u32, v: u32) {
        let at = 512 + i as usize * 4;
        self.file[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn sync_allocated(&mut self) {
        let a = self.allocated;
        self.file[at::BLOCKS_ALLOCATED..at::BLOCKS_ALLOCATED + 4].copy_from_slice(&a.to_le_bytes());
    }
    /// Fill bytes `[off, off+len)` of block `i` with `fill`, allocating the block (zeroed) first.
    pub fn write(&mut self, i: u32, off: u64, len: u64, fill: u8) {
        let mut e = self.entry(i);
        if e == UNALLOCATED || e == DISCARDED {
            e = self.allocated;
            self.allocated += 1;
            self.set_entry(i, e);
            let len = self.file.len() + self.block as usize;
            self.file.resize(len, 0);
            self.sync_allocated();
        }
        let at = (self.data_offset() + e as u64 * self.block + off) as usize;
        self.file[at..at + len as usize].fill(fill);
    }
}

pub static DEMO: Demo = Demo {
    name: "vdi",
    title: "VDI dynamic disk (VirtualBox)",
    about: "1 MiB blocks allocated in the order they were first written; the block map says where each one is, and unallocated blocks read as zeros.",
    qemu: Some("vdi"),
    build,
};

fn build() -> Sample {
    const MIB: u64 = 1 << 20;
    let mut w = Writer::new(16 * MIB, MIB, TYPE_NORMAL, [0x7d; 16], None);
    for (i, off, len, fill) in [(0u32, 0u64, MIB, 0x10u8), (1, 0, MIB / 2, 0x11), (9, 4096, 8192, 0x19), (4, 0, MIB, 0x14), (5, 0, MIB, 0x15), (15, MIB - 4096, 4096, 0x1f)] {
        w.write(i, off, len, fill);
    }
    Sample::new([("sample.vdi", w.file)])
}
