//! VHDX images written from MS-VHDX by a writer kept here (headers, region tables,
//! metadata, BAT with payload and sector bitmap entries, the log with CRC-32C), read back
//! through the chain: a dirty log replayed in memory (and shown as stored on request), a
//! differencing disk over its parent found by parent_linkage, and random mutations that
//! must never make the reader panic.
use alloc::{string::String, sync::Arc, vec, vec::Vec};
use proptest::prelude::*;

use super::structs::*;
use super::*;
use crate::chain::Chain;
use crate::image::OpenOptions;
use crate::io::MemFile;
use crate::testutil::Files;

pub(crate) const LOG_AT: u64 = MIB;
pub(crate) const META_AT: u64 = 2 * MIB;
pub(crate) const BAT_AT: u64 = 3 * MIB;
const DATA_AT: u64 = 4 * MIB;

fn put(b: &mut [u8], at: u64, v: &[u8]) {
    b[at as usize..at as usize + v.len()].copy_from_slice(v);
}

fn utf16le(s: &str) -> Vec<u8> {
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
    fn bitmap_entry_at(&self, i: u64) -> u64 {
        BAT_AT + 8 * ((i / self.chunk) * (self.chunk + 1) + self.chunk)
    }
    fn get(&self, at: u64) -> u64 {
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

fn read_all(c: &Chain) -> Vec<u8> {
    let mut b = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut b).unwrap();
    b
}

fn open(img: &[u8], as_stored: bool) -> Chain {
    let files = Files::new([("a.vhdx", img.to_vec())]);
    Chain::open_with("a.vhdx", Arc::new(MemFile(img.to_vec())), None, &files, &OpenOptions { as_stored, snapshot: None }).unwrap()
}

#[test]
fn fields_have_their_offsets_and_values() {
    let w = Writer::new(5 * MIB, MIB, [0xd1; 16], None);
    let c = open(&w.file, false);
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {} in {:?}", n, fields)).clone();
    assert_eq!(get("creator").value, "\"diskscope test writer\"");
    assert_eq!((get("header 2 sequence_number").offset, get("header 2 sequence_number").value.as_str()), (HEADER2_AT + 8, "2 (current: the valid header with the larger number)"));
    assert_eq!(get("header 1 sequence_number").value, "1");
    assert!(get("header 1 checksum").value.ends_with("(correct)"));
    assert_eq!((get("header 2 log_offset").offset, get("header 2 log_offset").value.as_str()), (HEADER2_AT + 72, "1048576"));
    assert_eq!(get("header 2 data_write_guid").value, "d1d1d1d1-d1d1-d1d1-d1d1-d1d1d1d1d1d1");
    assert!(get("region 0").value.starts_with("BAT 2dc27766-f623-4200-9d64-115e9bfd4a08: 1048576 bytes at 3145728, required"), "{}", get("region 0").value);
    assert_eq!(get("region table copy").value, "identical to the table at 196608");
    assert_eq!((get("block_size").offset, get("block_size").value.as_str()), (META_AT + 65536, "1 MiB (1048576 bytes)"));
    assert_eq!(get("virtual_disk_size").value, "5 MiB (5242880 bytes)");
    assert_eq!((get("logical_sector_size").value.as_str(), get("physical_sector_size").value.as_str()), ("512 bytes", "4096 bytes"));
    assert_eq!(get("page_83_data").value, "83838383-8383-8383-8383-838383838383");
    assert!(get("BAT").value.starts_with("5 entries (5 payload blocks"), "{}", get("BAT").value);
    let i = c.top().info();
    assert_eq!((i.format, i.virtual_size, i.cluster_size, i.dirty), ("vhdx", 5 * MIB, MIB, false));
    assert_eq!(c.top().identity().as_deref(), Some("vhdx-guid:d1d1d1d1-d1d1-d1d1-d1d1-d1d1d1d1d1d1"));
}

#[test]
fn payload_states_read_as_qemu_reads_them() {
    let mut w = Writer::new(6 * MIB, MIB, [1; 16], None);
    let mut model = vec![0u8; 6 * MIB as usize];
    w.write(0, &[0x11; 4096]);
    model[..4096].fill(0x11);
    w.write(2 * MIB + 512, &[0x22; 1024]);
    model[2 * MIB as usize + 512..2 * MIB as usize + 1536].fill(0x22);
    for (i, state) in [(1u64, ZERO), (3, UNMAPPED), (4, UNDEFINED)] {
        let at = w.payload_entry_at(i);
        w.set(at, state);
    }
    let c = open(&w.file, false);
    assert_eq!(read_all(&c), model);
    let mut e = Vec::new();
    c.map(0, 6 * MIB, &mut e).unwrap();
    let kinds: Vec<_> = e.iter().map(|x| (x.start / MIB, x.present, x.zero, x.data)).collect();
    assert_eq!(kinds, [(0, true, false, true), (1, true, true, false), (2, true, false, true), (3, true, true, false), (5, false, true, false)]);
    let r = c.top().check().unwrap();
    assert_eq!(r.corruptions, 0, "{:?}", r.findings);
    // PARTIALLY_PRESENT without a parent: QEMU fails to read it; an invalid mapping here.
    let at = w.payload_entry_at(2);
    let v = w.get(at);
    w.set(at, v & !7 | PARTIALLY_PRESENT);
    let c = open(&w.file, false);
    let mut buf = vec![0u8; 512];
    assert!(matches!(c.read(2 * MIB, &mut buf), Err(crate::Error::CorruptMapping { offset, .. }) if offset == at));
    assert!(c.top().check().unwrap().findings.iter().any(|f| f.code == "partial-without-parent"));
}

/// A dirty log: block 1's data written, its BAT entry updated only in the log (entry 1),
/// then entry 2 zeroing the BAT page again and rewriting it with block 1 and block 2,
/// and entry 3 patching a sector of block 0's data. A stale entry from an older session
/// sits further on and must not apply.
fn dirty() -> (Writer, Vec<u8>, Vec<u8>) {
    let mut w = Writer::new(4 * MIB, MIB, [2; 16], None);
    let mut stored = vec![0u8; 4 * MIB as usize];
    let b0 = w.write(0, &[0x10; 8192]);
    stored[..8192].fill(0x10);
    let mut replayed = stored.clone();
    // Blocks 1 and 2 are on disk, but the BAT does not point at them yet.
    let b1 = w.append(MIB);
    w.file[b1 as usize..(b1 + MIB) as usize].fill(0x21);
    let b2 = w.append(MIB);
    w.file[b2 as usize..(b2 + MIB) as usize].fill(0x22);
    let mut page = w.file[BAT_AT as usize..BAT_AT as usize + 4096].to_vec();
    page[8..16].copy_from_slice(&(b1 | FULLY_PRESENT).to_le_bytes());
    let mut page2 = page.clone();
    page2[16..24].copy_from_slice(&(b2 | FULLY_PRESENT).to_le_bytes());
    let guid = [0x77; 16];
    let len = w.file.len() as u64;
    let e1 = log_entry(5, guid, 0, &[LogDesc::Data(BAT_AT, page)], len, len);
    let e2 = log_entry(6, guid, 0, &[LogDesc::Zero(BAT_AT, 4096), LogDesc::Data(BAT_AT, page2)], len, len);
    let mut patch = vec![0x10u8; 4096];
    patch[100..200].fill(0x5a);
    let e3 = log_entry(7, guid, 0, &[LogDesc::Data(b0 + 4096, patch)], len, len);
    let stale = log_entry(4, [0x66; 16], 0, &[LogDesc::Zero(BAT_AT, 4096)], len, len);
    let mut at = LOG_AT as usize;
    for e in [&e1, &e2, &e3] {
        w.file[at..at + e.len()].copy_from_slice(e);
        at += e.len();
    }
    let s = (LOG_AT + 512 * 1024) as usize;
    w.file[s..s + stale.len()].copy_from_slice(&stale);
    w.set_log_guid(guid);
    replayed[MIB as usize..2 * MIB as usize].fill(0x21);
    replayed[2 * MIB as usize..3 * MIB as usize].fill(0x22);
    replayed[4096 + 100..4096 + 200].fill(0x5a);
    (w, stored, replayed)
}

#[test]
fn a_dirty_log_is_replayed_in_memory_and_shown_as_stored_on_request() {
    let (w, stored, replayed) = dirty();
    let before = w.file.clone();
    let c = open(&w.file, false);
    assert!(c.top().info().dirty);
    assert_eq!(read_all(&c), replayed);
    let recs = c.top().records();
    assert_eq!(recs.len(), 4, "{:?}", recs);
    assert_eq!(recs.iter().filter(|r| r.applied).count(), 3);
    let stale = recs.iter().find(|r| r.offset == LOG_AT + 512 * 1024).unwrap();
    assert!(stale.stale && !stale.applied, "{:?}", stale);
    assert!(recs[1].fields.iter().any(|(k, v)| k == "descriptor 0" && v == "4096 zero bytes to byte 0x300000"), "{:?}", recs[1]);
    let r = c.top().check().unwrap();
    let dirty = r.findings.iter().find(|f| f.code == "log-dirty").expect("a finding says the log was replayed");
    assert_eq!(dirty.severity, crate::Severity::Warning);
    assert_eq!(r.corruptions, 0, "{:?}", r.findings);
    // The patched sector of block 0 is read through the overlay (computed), the rest stored.
    let mut e = Vec::new();
    c.map(0, MIB, &mut e).unwrap();
    assert!(e.iter().any(|x| x.computed && x.start == 4096), "{:?}", e);
    // As stored: the BAT as on disk, nothing applied.
    let s = open(&w.file, true);
    assert_eq!(read_all(&s), stored);
    assert!(s.top().records().iter().all(|r| !r.applied));
    assert!(s.top().check().unwrap().findings.iter().any(|f| f.code == "log-dirty"));
    assert_eq!(w.file, before, "nothing is written");
}

#[test]
fn a_log_entry_with_a_bad_checksum_is_not_replayed() {
    let (mut w, stored, _) = dirty();
    // Break entry 1: the sequence then starts at entry 2, which zeroes and rewrites the page.
    w.file[LOG_AT as usize + 4096 + 10] ^= 1;
    let c = open(&w.file, false);
    let recs = c.top().records();
    assert!(recs[0].note.contains("checksum"), "{:?}", recs[0]);
    assert!(!recs[0].applied && recs[1].applied);
    assert_ne!(read_all(&c), stored);
}

#[test]
fn a_differencing_disk_reads_its_sectors_over_the_parent() {
    let size = 3 * MIB;
    let mut parent = Writer::new(size, MIB, [0xaa; 16], None);
    parent.write(0, &vec![0x50; MIB as usize]);
    parent.write(2 * MIB, &[0x52; 4096]);
    let mut child = Writer::new(size, MIB, [0xcc; 16], Some(("{AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA}", ".\\parent.vhdx")));
    child.write(4096, &[0x61; 1024]);
    child.write(2 * MIB + 8192, &[0x62; 512]);
    let mut model = vec![0u8; size as usize];
    model[..MIB as usize].fill(0x50);
    model[2 * MIB as usize..2 * MIB as usize + 4096].fill(0x52);
    model[4096..5120].fill(0x61);
    model[2 * MIB as usize + 8192..2 * MIB as usize + 8704].fill(0x62);
    let c = Files::new([("child.vhdx", child.file.clone()), ("parent.vhdx", parent.file.clone())]).open("child.vhdx").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    assert_eq!(c.top().info().backing.as_ref().unwrap().name, "parent.vhdx");
    assert_eq!(c.top().backing_identity().as_deref(), Some("vhdx-guid:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"));
    assert!(c.findings.is_empty(), "{:?}", c.findings);
    assert_eq!(read_all(&c), model);
    let fields = c.top().header_fields();
    assert!(fields.iter().any(|f| f.name == "parent absolute_win32_path" && f.value == "\"D:\\\\VMs\\\\.\\\\parent.vhdx\""), "{:?}", fields);
    let r = c.top().check().unwrap();
    assert_eq!(r.corruptions, 0, "{:?}", r.findings);
    // Renamed parent: found by its data_write_guid among the files beside the child.
    let c = crate::formats::vdi::tests::Folder(Files::new([("child.vhdx", child.file.clone()), ("p2.vhdx", parent.file)])).open("child.vhdx").unwrap();
    assert_eq!((c.layers.len(), c.layers[1].name.as_str()), (2, "p2.vhdx"));
}

#[test]
fn sector_bitmaps_count_logical_sectors() {
    // 4 KiB logical sectors: one bitmap bit per 4 KiB; a chunk of 32768 blocks.
    let size = 3 * MIB;
    let mut parent = Writer::new(size, MIB, [0xab; 16], None).with_4k_sectors();
    parent.write(0, &vec![0x40; 3 * MIB as usize / 3]);
    let mut child = Writer::new(size, MIB, [0xcd; 16], Some(("{abababab-abab-abab-abab-abababababab}", "p.vhdx"))).with_4k_sectors();
    child.write(3 * 4096, &[0x41; 8192]);
    child.write(MIB + MIB - 4096, &[0x42; 4096]);
    let c = Files::new([("c.vhdx", child.file.clone()), ("p.vhdx", parent.file.clone())]).open("c.vhdx").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    let mut model = vec![0u8; size as usize];
    model[..MIB as usize].fill(0x40);
    model[3 * 4096..5 * 4096].fill(0x41);
    model[2 * MIB as usize - 4096..2 * MIB as usize].fill(0x42);
    assert_eq!(read_all(&c), model);
    let f = c.top().header_fields();
    assert!(f.iter().any(|x| x.name == "BAT" && x.value.contains("after every 32768")), "{:?}", f.iter().find(|x| x.name == "BAT"));
}

#[test]
fn check_counts_bat_entries_as_qemu_does() {
    let mut w = Writer::new(4 * MIB, MIB, [3; 16], None);
    w.write(0, &[1; 512]);
    w.write(MIB, &[2; 512]);
    let len = w.file.len() as u64;
    w.set(w.payload_entry_at(2), (len + 16 * MIB) | FULLY_PRESENT); // past the end of the file
    w.set(w.payload_entry_at(3), META_AT | FULLY_PRESENT); // over the metadata region
    let c = open(&w.file, false);
    let r = c.top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().filter(|f| f.severity == crate::Severity::Corruption).map(|f| (f.code, f.offset)).collect();
    assert_eq!(codes, [("block-past-end", Some(BAT_AT + 16)), ("block-over-region", Some(BAT_AT + 24))]);
    assert_eq!(r.exit_code(), 2);
    let mut buf = vec![0u8; 512];
    assert!(matches!(c.read(2 * MIB, &mut buf), Err(crate::Error::CorruptMapping { offset, .. }) if offset == BAT_AT + 16));
}

#[test]
fn damaged_headers_and_region_tables_fall_back_to_their_copies() {
    let mut w = Writer::new(2 * MIB, MIB, [4; 16], None);
    w.write(0, &[9; 512]);
    let mut f = w.file.clone();
    f[HEADER2_AT as usize + 100] ^= 1; // header 2 (current) damaged: header 1 is used
    f[REGION1_AT as usize + 20] ^= 1; // region table 1 damaged: the copy is used
    let c = open(&f, false);
    let mut b = vec![0u8; 512];
    c.read(0, &mut b).unwrap();
    assert_eq!(b, vec![9u8; 512]);
    let codes: Vec<_> = c.top().check().unwrap().findings.iter().map(|f| f.code).collect();
    assert!(codes.contains(&"header-invalid") && codes.contains(&"region-table-invalid"), "{:?}", codes);
    f[HEADER1_AT as usize + 100] ^= 1;
    assert!(matches!(Files::new([("a.vhdx", f)]).open("a.vhdx"), Err(crate::Error::Invalid { offset, .. }) if offset == HEADER1_AT));
}

#[test]
fn reads_stay_few() {
    // After the two reads of probing: the header section, the log, the metadata and the
    // BAT, whatever the number of blocks.
    let mut w = Writer::new(64 * MIB, MIB, [5; 16], None);
    for i in (0..64).step_by(2) {
        w.write(i * MIB, &[1; 512]);
    }
    let n = crate::formats::vdi::tests::reads_to_map("a.vhdx", &w.file);
    assert!(n <= 6, "{} reads", n);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    /// Mutations in the headers, region table, log, metadata and BAT.
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..6, 0usize..8192, any::<u64>()), 1..8), as_stored in any::<bool>()) {
        static DIRTY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let mut f = DIRTY.get_or_init(|| dirty().0.file).clone();
        for (area, at, v) in muts {
            let base = [HEADER2_AT, REGION1_AT, LOG_AT, META_AT, META_AT + 65536 - 4096, BAT_AT][area] as usize;
            let at = (base + at).min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        let files = Files::new([("a.vhdx", f.clone())]);
        if let Ok(chain) = Chain::open_with("a.vhdx", Arc::new(MemFile(f)), None, &files, &OpenOptions { as_stored, snapshot: None }) {
            let size = chain.virtual_size();
            let mut entries = Vec::new();
            let _ = chain.map(0, size.min(64 << 20), &mut entries);
            let _ = chain.top().check();
            let _ = chain.top().records();
            let mut buf = vec![0u8; 8192];
            if size >= 8192 {
                let _ = chain.read(0, &mut buf);
                let _ = chain.read(size - 8192, &mut buf);
            }
            let _ = crate::report::Report::new(&chain);
        }
    }
}
