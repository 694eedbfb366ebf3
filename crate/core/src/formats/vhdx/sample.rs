//! VHDX written from MS-VHDX by the writer the tests use (headers, region tables,
//! metadata, BAT, log entries), and the demo sample.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{string::String, vec, vec::Vec};

use super::structs::*;
use super::*;
use crate::samples::{text, Demo, Sample};

pub(crate) const LOG_AT: u64 = MIB;
pub(crate) const META_AT: u64 = 2 * MIB;
pub(crate) const BAT_AT: u64 = 3 * MIB;
pub(crate) const DATA_AT: u64 = 4 * MIB;

pub(crate) fn put(b: &mut [u8], at: u64, v: &[u8]) {
    b[at as usize..at as usize + v.len()].copy_from_slice(v);
}

pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// A log descriptor to write into a log entry.
pub(crate) enum LogDesc {
    Data(u64, Vec<u8>),
    Zero(u64, u64),
}

/// One log entry, laid out as MS-VHDX 2.3.1 says, its CRC-32C set.
pub(crate) fn log_entry(seq: u64, guid: [u8; 16], tail: u32, descs: &[LogDesc], flushed: u64, last: u64) -> Vec<u8> {
    let n = descs.len() as u64;
    let desc_sectors = (n + 2).div_ceil(128);
    let datas = descs.iter().filter(|d| matches!(d, LogDesc::Data(..))).count() as u64;
    let mut e = vec![0u8; ((desc_sectors + datas) * 4096) as usize];
    let len = e.len() as u32;
    put(&mut e, 0, b"loge");
    put(&mut e, 8, &len.to_le_bytes());
    put(&mut e, 12, &tail.to_le_bytes());
    put(&mut e, 16, &seq.to_le_bytes());
    put(&mut e, 24, &(n as u32).to_le_bytes());
    put(&mut e, 32, &guid);
    put(&mut e, 48, &flushed.to_le_bytes());
    put(&mut e, 56, &last.to_le_bytes());
    let mut data_at = desc_sectors * 4096;
    for (k, d) in descs.iter().enumerate() {
        let o = 64 + 32 * k as u64;
        match d {
            LogDesc::Data(off, page) => {
                put(&mut e, o, b"desc");
                put(&mut e, o + 4, &page[4092..4096]);
                put(&mut e, o + 8, &page[..8]);
                put(&mut e, o + 16, &off.to_le_bytes());
                put(&mut e, o + 24, &seq.to_le_bytes());
                put(&mut e, data_at, b"data");
                put(&mut e, data_at + 4, &((seq >> 32) as u32).to_le_bytes());
                put(&mut e, data_at + 8, &page[8..4092]);
                put(&mut e, data_at + 4092, &(seq as u32).to_le_bytes());
                data_at += 4096;
            }
            LogDesc::Zero(off, length) => {
                put(&mut e, o, b"zero");
                put(&mut e, o + 8, &length.to_le_bytes());
                put(&mut e, o + 16, &off.to_le_bytes());
                put(&mut e, o + 24, &seq.to_le_bytes());
            }
        }
    }
    let c = crc32c(&e, 4);
    put(&mut e, 4, &c.to_le_bytes());
    e
}

pub(crate) struct Writer {
    pub file: Vec<u8>,
    pub block: u64,
    pub chunk: u64,
    pub diff: bool,
    pub lss: u64,
}

impl Writer {
    /// A dynamic disk (or a differencing one naming `parent`: parent_linkage and relative path).
    pub fn new(size: u64, block: u64, data_guid: [u8; 16], parent: Option<(&str, &str)>) -> Writer {
        let mut f = vec![0u8; DATA_AT as usize];
        put(&mut f, 0, b"vhdxfile");
        put(&mut f, 8, &utf16le("diskscope test writer"));
        for (at, seq) in [(HEADER1_AT, 1u64), (HEADER2_AT, 2)] {
            put(&mut f, at, b"head");
            put(&mut f, at + 8, &seq.to_le_bytes());
            put(&mut f, at + 16, &[0x0f; 16]);
            put(&mut f, at + 32, &data_guid);
            put(&mut f, at + 66, &1u16.to_le_bytes());
            put(&mut f, at + 68, &(MIB as u32).to_le_bytes());
            put(&mut f, at + 72, &LOG_AT.to_le_bytes());
        }
        for at in [REGION1_AT, REGION2_AT] {
            put(&mut f, at, b"regi");
            put(&mut f, at + 8, &2u32.to_le_bytes());
            for (k, (g, off)) in [(BAT_GUID, BAT_AT), (METADATA_GUID, META_AT)].iter().enumerate() {
                let o = at + 16 + 32 * k as u64;
                put(&mut f, o, g);
                put(&mut f, o + 16, &off.to_le_bytes());
                put(&mut f, o + 24, &(MIB as u32).to_le_bytes());
                put(&mut f, o + 28, &1u32.to_le_bytes());
            }
            let c = crc32c(&f[at as usize..at as usize + REGION_BYTES], 4);
            put(&mut f, at + 4, &c.to_le_bytes());
        }
        // Metadata: the table, then the items from 64 KiB into the region.
        let mut items: Vec<([u8; 16], Vec<u8>, u32)> = vec![
            (FILE_PARAMETERS, [(block as u32).to_le_bytes(), (if parent.is_some() { 2u32 } else { 0 }).to_le_bytes()].concat(), 4),
            (VIRTUAL_DISK_SIZE, size.to_le_bytes().to_vec(), 6),
            (PAGE83, vec![0x83; 16], 6),
            (LOGICAL_SECTOR, 512u32.to_le_bytes().to_vec(), 6),
            (PHYSICAL_SECTOR, 4096u32.to_le_bytes().to_vec(), 6),
        ];
        if let Some((linkage, path)) = parent {
            let kv = [("parent_linkage", String::from(linkage)), ("relative_path", String::from(path)), ("absolute_win32_path", alloc::format!("D:\\VMs\\{}", path))];
            let mut item = Vec::new();
            item.extend_from_slice(&VHDX_PARENT_TYPE);
            item.extend_from_slice(&0u16.to_le_bytes());
            item.extend_from_slice(&(kv.len() as u16).to_le_bytes());
            let mut strings = Vec::new();
            let base = 20 + 12 * kv.len();
            for (k, v) in &kv {
                let (kb, vb) = (utf16le(k), utf16le(v));
                let ko = base + strings.len();
                strings.extend_from_slice(&kb);
                let vo = base + strings.len();
                strings.extend_from_slice(&vb);
                item.extend_from_slice(&(ko as u32).to_le_bytes());
                item.extend_from_slice(&(vo as u32).to_le_bytes());
                item.extend_from_slice(&(kb.len() as u16).to_le_bytes());
                item.extend_from_slice(&(vb.len() as u16).to_le_bytes());
            }
            item.extend_from_slice(&strings);
            items.push((PARENT_LOCATOR, item, 6));
        }
        put(&mut f, META_AT, b"metadata");
        put(&mut f, META_AT + 10, &(items.len() as u16).to_le_bytes());
        let mut off = 65536u32;
        for (k, (id, bytes, flags)) in items.iter().enumerate() {
            let o = META_AT + 32 + 32 * k as u64;
            put(&mut f, o, id);
            put(&mut f, o + 16, &off.to_le_bytes());
            put(&mut f, o + 20, &(bytes.len() as u32).to_le_bytes());
            put(&mut f, o + 24, &flags.to_le_bytes());
            put(&mut f, META_AT + off as u64, bytes);
            off += (bytes.len() as u32).next_multiple_of(8);
        }
        let mut w = Writer { file: f, block, chunk: (1 << 23) * 512 / block, diff: parent.is_some(), lss: 512 };
        w.seal_headers();
        w
    }

    /// Make the logical sector 4 KiB (before any write): the sector bitmap then has one bit
    /// per 4 KiB, and a bitmap block covers eight times as many payload blocks.
    pub fn with_4k_sectors(mut self) -> Writer {
        put(&mut self.file, META_AT + 65568, &4096u32.to_le_bytes());
        self.lss = 4096;
        self.chunk = (1 << 23) * 4096 / self.block;
        self
    }

    pub fn seal_headers(&mut self) {
        for at in [HEADER1_AT, HEADER2_AT] {
            let c = crc32c(&self.file[at as usize..at as usize + HEADER_BYTES], 4);
            put(&mut self.file, at + 4, &c.to_le_bytes());
        }
    }
    pub fn set_log_guid(&mut self, g: [u8; 16]) {
        put(&mut self.file, HEADER2_AT + 48, &g);
        self.seal_headers();
    }
    pub fn payload_entry_at(&self, i: u64) -> u64 {
        BAT_AT + 8 * (i + i / self.chunk)
    }
    pub fn bitmap_entry_at(&self, i: u64) -> u64 {
        BAT_AT + 8 * ((i / self.chunk) * (self.chunk + 1) + self.chunk)
    }
    pub fn get(&self, at: u64) -> u64 {
        u64::from_le_bytes(self.file[at as usize..at as usize + 8].try_into().unwrap())
    }
    pub fn set(&mut self, at: u64, v: u64) {
        put(&mut self.file, at, &v.to_le_bytes());
    }
    /// Append a MiB-aligned area of `len` bytes; returns its offset.
    pub fn append(&mut self, len: u64) -> u64 {
        let at = (self.file.len() as u64).next_multiple_of(MIB);
        self.file.resize((at + len) as usize, 0);
        at
    }
    /// Write `data` at guest `off` (sector-aligned, in one block). A disk without a parent
    /// allocates whole blocks (FULLY_PRESENT); a differencing one marks the sectors in the
    /// chunk's sector bitmap (PARTIALLY_PRESENT).
    pub fn write(&mut self, off: u64, data: &[u8]) -> u64 {
        let i = off / self.block;
        let pe = self.payload_entry_at(i);
        let mut e = self.get(pe);
        if e & 7 != FULLY_PRESENT && e & 7 != PARTIALLY_PRESENT {
            let at = self.append(self.block);
            e = at | if self.diff { PARTIALLY_PRESENT } else { FULLY_PRESENT };
            self.set(pe, e);
        }
        let host = (e >> 20 << 20) + off % self.block;
        put(&mut self.file, host, data);
        if self.diff {
            let be = self.bitmap_entry_at(i);
            let mut b = self.get(be);
            if b & 7 != SB_PRESENT {
                b = self.append(MIB) | SB_PRESENT;
                self.set(be, b);
            }
            let spb = self.block / self.lss;
            let first = (i % self.chunk) * spb + (off % self.block) / self.lss;
            for s in first..first + data.len() as u64 / self.lss {
                self.file[((b >> 20 << 20) + s / 8) as usize] |= 1 << (s % 8);
            }
        }
        host
    }
}

pub static DEMO: Demo = Demo {
    name: "vhdx",
    title: "VHDX dynamic disk",
    about: "1 MiB payload blocks: fully present ones hold data, one is marked zero in the BAT, the rest are not present and read as zeros.",
    qemu: Some("vhdx"),
    build,
};

fn build() -> Sample {
    let mut w = Writer::new(16 * MIB, MIB, [0x1d; 16], None);
    for b in [0u64, 1, 6, 7, 12] {
        w.write(b * MIB, &text(&alloc::format!("VHDX sample, block {}", b), MIB as usize));
    }
    let at = w.payload_entry_at(9);
    w.set(at, ZERO);
    Sample::new([("sample.vhdx", w.file)])
}
