//! qcow2 written as QEMU lays it out, by the writer the tests use (refcounts, snapshots,
//! compressed clusters, subclusters, data files), and the demo sample made with it.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{string::String, vec, vec::Vec};

use super::{L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED};
use crate::samples::{text, Demo, Sample};

pub(crate) use crate::samples::{get64, put};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Deflate,
    Zstd,
}

/// A qcow2 image as QEMU lays one out: header cluster, refcount table, L1 table, then
/// L2 tables, data and compressed data appended in allocation order; refcount blocks,
/// snapshot tables and OFLAG_COPIED are filled in by [`Writer::finish`].
pub(crate) struct Writer {
    pub cs: u64,
    pub bits: u32,
    pub v3: bool,
    pub ext: bool,
    pub size: u64,
    pub file: Vec<u8>,
    /// The external data file, when the image has one.
    pub data_file: Option<Vec<u8>>,
    pub compression: Compression,
    pub l1: u64,
    pub l1_entries: u64,
    pub reft: u64,
    /// References per host cluster, as the refcounts must say.
    pub refs: Vec<u16>,
    pub snapshots: Vec<(String, String, u64, u64)>,
}

impl Writer {
    pub fn new(bits: u32, size: u64, v3: bool, ext: bool, backing: Option<(&str, Option<&str>)>) -> Writer {
        let cs = 1u64 << bits;
        let eb = if ext { 16 } else { 8 };
        let l1_entries = size.div_ceil(cs / eb * cs);
        assert!(l1_entries * 8 <= cs, "the writer keeps the L1 table in one cluster");
        let mut w = Writer {
            cs,
            bits,
            v3,
            ext,
            size,
            file: vec![0u8; 3 * cs as usize],
            data_file: None,
            compression: Compression::Deflate,
            l1: 2 * cs,
            l1_entries,
            reft: cs,
            refs: vec![1, 1, 1],
            snapshots: Vec::new(),
        };
        let f = &mut w.file;
        put(f, 0, b"QFI\xfb");
        put(f, 4, &(if v3 { 3u32 } else { 2 }).to_be_bytes());
        put(f, 20, &bits.to_be_bytes());
        put(f, 24, &size.to_be_bytes());
        put(f, 36, &(l1_entries as u32).to_be_bytes());
        put(f, 40, &(2 * cs).to_be_bytes());
        put(f, 48, &cs.to_be_bytes());
        put(f, 56, &1u32.to_be_bytes());
        let mut at = 72u64;
        if v3 {
            put(f, 72, &(if ext { 16u64 } else { 0 }).to_be_bytes());
            put(f, 96, &4u32.to_be_bytes());
            put(f, 100, &112u32.to_be_bytes());
            at = 112;
        }
        if let Some((name, fmt)) = backing {
            if let Some(fmt) = fmt {
                put(f, at, &super::header::EXT_BACKING_FORMAT.to_be_bytes());
                put(f, at + 4, &(fmt.len() as u32).to_be_bytes());
                put(f, at + 8, fmt.as_bytes());
                at += 8 + (fmt.len() as u64).next_multiple_of(8);
            }
            let name_at = at + 8;
            put(f, 8, &name_at.to_be_bytes());
            put(f, 16, &(name.len() as u32).to_be_bytes());
            put(f, name_at, name.as_bytes());
        }
        w
    }

    pub fn with_zstd(mut self) -> Writer {
        assert!(self.v3);
        self.compression = Compression::Zstd;
        let inc = get64(&self.file, 72) | 8;
        put(&mut self.file, 72, &inc.to_be_bytes());
        self.file[104] = 1;
        self
    }

    /// Guest data in an external data file named `name` (1:1 mapping, no refcounts).
    pub fn with_data_file(mut self, name: &str) -> Writer {
        assert!(self.v3);
        let inc = get64(&self.file, 72) | 4;
        put(&mut self.file, 72, &inc.to_be_bytes());
        // The extension goes first in the area (the writer places no other extension then).
        put(&mut self.file, 112, &super::header::EXT_DATA_FILE.to_be_bytes());
        put(&mut self.file, 116, &(name.len() as u32).to_be_bytes());
        put(&mut self.file, 120, name.as_bytes());
        self.data_file = Some(vec![0u8; self.size as usize]);
        self
    }

    pub fn eb(&self) -> u64 {
        if self.ext { 16 } else { 8 }
    }
    pub fn l2_entries(&self) -> u64 {
        self.cs / self.eb()
    }
    pub fn get(&self, at: u64) -> u64 {
        get64(&self.file, at)
    }
    pub fn set(&mut self, at: u64, v: u64) {
        put(&mut self.file, at, &v.to_be_bytes());
    }
    /// A new cluster at the (cluster-aligned) end of the file.
    pub fn alloc(&mut self) -> u64 {
        let at = (self.file.len() as u64).next_multiple_of(self.cs);
        self.file.resize((at + self.cs) as usize, 0);
        let c = (at / self.cs) as usize;
        if self.refs.len() <= c {
            self.refs.resize(c + 1, 0);
        }
        self.refs[c] += 1;
        at
    }
    pub fn rc(&self, off: u64) -> u16 {
        self.refs.get((off / self.cs) as usize).copied().unwrap_or(0)
    }
    pub fn unref(&mut self, off: u64) {
        let c = (off / self.cs) as usize;
        self.refs[c] -= 1;
    }

    /// The byte offset of the L2 entry for `guest`, copying a shared L2 table first.
    pub fn l2_entry(&mut self, guest: u64) -> u64 {
        let n = self.l2_entries();
        let (i, j) = (guest / self.cs / n, guest / self.cs % n);
        let l1e = self.l1 + i * 8;
        let cur = self.get(l1e) & L1E_OFFSET_MASK;
        if cur == 0 {
            let t = self.alloc();
            self.set(l1e, t);
        } else if self.rc(cur) > 1 {
            let t = self.alloc();
            let table = self.file[cur as usize..(cur + self.cs) as usize].to_vec();
            put(&mut self.file, t, &table);
            self.unref(cur);
            self.set(l1e, t);
        }
        (self.get(l1e) & L1E_OFFSET_MASK) + j * self.eb()
    }

    /// The host cluster to write guest cluster `guest` into, allocating or copying it.
    pub fn data_cluster(&mut self, guest: u64) -> (u64, u64) {
        let e = self.l2_entry(guest);
        let cur = self.get(e);
        let cs = guest / self.cs * self.cs;
        if self.data_file.is_some() {
            self.set(e, cs | OFLAG_COPIED);
            return (e, cs);
        }
        let off = cur & L2E_OFFSET_MASK;
        if cur & OFLAG_COMPRESSED == 0 && off != 0 && self.rc(off) == 1 {
            self.set(e, off); // a preallocated zero cluster becomes data
            return (e, off);
        }
        let new = self.alloc();
        if cur & OFLAG_COMPRESSED == 0 && off != 0 {
            let old = self.file[off as usize..(off + self.cs) as usize].to_vec();
            put(&mut self.file, new, &old);
            self.unref(off);
        } else if cur & OFLAG_COMPRESSED != 0 {
            // As QEMU: the cluster is decompressed into its new home, all of it allocated.
            let shift = 62 - (self.bits - 8);
            let coff = cur & ((1u64 << shift) - 1);
            let len = (((cur >> shift) & ((1 << (self.bits - 8)) - 1)) + 1) * 512 - (coff & 511);
            let input = self.file[coff as usize..((coff + len) as usize).min(self.file.len())].to_vec();
            let mut out = vec![0u8; self.cs as usize];
            let codec = if self.compression == Compression::Zstd { crate::codec::Codec::Zstd } else { crate::codec::Codec::Deflate };
            crate::codec::decode(codec, &input, &mut out).unwrap();
            put(&mut self.file, new, &out);
            self.drop_compressed(cur);
            if self.ext {
                self.set(e + 8, 0xffff_ffff);
            }
        }
        self.set(e, new);
        (e, new)
    }

    pub fn drop_compressed(&mut self, e: u64) {
        let shift = 62 - (self.bits - 8);
        let off = e & ((1u64 << shift) - 1);
        let sectors = ((e >> shift) & ((1 << (self.bits - 8)) - 1)) + 1;
        let len = sectors * 512 - (off & 511);
        for c in off / self.cs..=(off + len - 1) / self.cs {
            self.refs[c as usize] -= 1;
        }
    }

    pub fn store(&mut self, host: u64, bytes: &[u8]) {
        match &mut self.data_file {
            Some(d) => put(d, host, bytes),
            None => put(&mut self.file, host, bytes),
        }
    }

    /// Fill guest cluster `guest` with `fill` (the whole cluster; the disk's tail too).
    pub fn write_cluster(&mut self, guest: u64, fill: u8) {
        self.write_bytes(guest, &vec![fill; self.cs as usize]);
    }

    /// Store `data` (at most a cluster; the rest of the cluster is zeros) in guest cluster `guest`.
    pub fn write_bytes(&mut self, guest: u64, data: &[u8]) {
        let (e, host) = self.data_cluster(guest);
        let mut bytes = data.to_vec();
        bytes.resize(self.cs as usize, 0);
        self.store(host, &bytes);
        if self.ext {
            self.set(e + 8, 0xffff_ffff);
        }
    }

    /// Fill subcluster `sub` (0..32) of guest cluster `guest` (extended L2 only).
    pub fn write_sub(&mut self, guest: u64, sub: u64, fill: u8) {
        assert!(self.ext);
        let (e, host) = self.data_cluster(guest);
        let sc = self.cs / 32;
        self.store(host + sub * sc, &vec![fill; sc as usize]);
        let bm = (self.get(e + 8) | 1 << sub) & !(1u64 << (32 + sub));
        self.set(e + 8, bm);
    }

    /// Subcluster `sub` reads as zeros (extended L2 only); the host cluster is kept.
    pub fn zero_sub(&mut self, guest: u64, sub: u64) {
        let e = self.l2_entry(guest);
        let bm = (self.get(e + 8) & !(1u64 << sub)) | 1u64 << (32 + sub);
        self.set(e + 8, bm);
    }

    /// Guest cluster reads as zeros (v3 zero flag); `keep` keeps its host cluster.
    pub fn zero_cluster(&mut self, guest: u64, keep: bool) {
        assert!(self.v3 && !self.ext);
        let e = self.l2_entry(guest);
        let cur = self.get(e);
        let off = cur & L2E_OFFSET_MASK;
        if cur & OFLAG_COMPRESSED != 0 {
            self.drop_compressed(cur);
            self.set(e, 1);
        } else if keep && off != 0 && self.rc(off) == 1 {
            self.set(e, off | 1);
        } else {
            if off != 0 && self.data_file.is_none() {
                self.unref(off);
            }
            self.set(e, 1);
        }
    }

    /// Store `data` (one whole cluster) compressed.
    pub fn write_compressed(&mut self, guest: u64, data: &[u8]) {
        assert_eq!(data.len() as u64, self.cs);
        let e = self.l2_entry(guest);
        let cur = self.get(e);
        if cur & OFLAG_COMPRESSED != 0 {
            self.drop_compressed(cur);
        } else if cur & L2E_OFFSET_MASK != 0 {
            self.unref(cur & L2E_OFFSET_MASK);
        }
        let packed = match self.compression {
            Compression::Deflate => miniz_oxide::deflate::compress_to_vec(data, 6),
            Compression::Zstd => ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest),
        };
        let off = self.file.len() as u64;
        put(&mut self.file, off, &packed);
        let sectors = ((off & 511) + packed.len() as u64).div_ceil(512);
        // QEMU pads compressed data to whole sectors (the last one runs into the next).
        self.file.resize((off + packed.len() as u64).next_multiple_of(512) as usize, 0);
        for c in off / self.cs..=(off + packed.len() as u64 - 1) / self.cs {
            if self.refs.len() <= c as usize {
                self.refs.resize(c as usize + 1, 0);
            }
            self.refs[c as usize] += 1;
        }
        let shift = 62 - (self.bits - 8);
        self.set(e, OFLAG_COMPRESSED | ((sectors - 1) << shift) | off);
        if self.ext {
            self.set(e + 8, 0);
        }
    }

    /// An internal snapshot of the current disk: a copy of the L1 table, and one more
    /// reference to every table and cluster it reaches.
    pub fn snapshot(&mut self, id: &str, name: &str) {
        let copy = self.alloc();
        let l1 = self.file[self.l1 as usize..(self.l1 + self.l1_entries * 8) as usize].to_vec();
        put(&mut self.file, copy, &l1);
        for i in 0..self.l1_entries {
            let l2 = get64(&l1, i * 8) & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            self.refs[(l2 / self.cs) as usize] += 1;
            for k in 0..self.l2_entries() {
                let e = self.get(l2 + k * self.eb());
                if e & OFLAG_COMPRESSED != 0 {
                    let shift = 62 - (self.bits - 8);
                    let off = e & ((1u64 << shift) - 1);
                    let len = (((e >> shift) & ((1 << (self.bits - 8)) - 1)) + 1) * 512 - (off & 511);
                    for c in off / self.cs..=(off + len - 1) / self.cs {
                        self.refs[c as usize] += 1;
                    }
                } else if e & L2E_OFFSET_MASK != 0 && self.data_file.is_none() {
                    self.refs[((e & L2E_OFFSET_MASK) / self.cs) as usize] += 1;
                }
            }
        }
        self.snapshots.push((String::from(id), String::from(name), copy, self.l1_entries));
    }

    /// Write the snapshot table, the refcount blocks and the COPIED flags.
    pub fn finish(mut self) -> Writer {
        if !self.snapshots.is_empty() {
            let mut table = Vec::new();
            for (id, name, l1, n) in &self.snapshots {
                let mut e = vec![0u8; 40];
                e[0..8].copy_from_slice(&l1.to_be_bytes());
                e[8..12].copy_from_slice(&(*n as u32).to_be_bytes());
                e[12..14].copy_from_slice(&(id.len() as u16).to_be_bytes());
                e[14..16].copy_from_slice(&(name.len() as u16).to_be_bytes());
                e[16..20].copy_from_slice(&1_700_000_000u32.to_be_bytes());
                e[24..32].copy_from_slice(&3_500_000_000u64.to_be_bytes());
                e[36..40].copy_from_slice(&16u32.to_be_bytes());
                e.extend_from_slice(&0u64.to_be_bytes());
                e.extend_from_slice(&self.size.to_be_bytes());
                e.extend_from_slice(id.as_bytes());
                e.extend_from_slice(name.as_bytes());
                e.resize(e.len().next_multiple_of(8), 0);
                table.extend(e);
            }
            let at = self.alloc();
            for _ in 1..(table.len() as u64).div_ceil(self.cs) {
                self.alloc();
            }
            put(&mut self.file, at, &table);
            let n = self.snapshots.len() as u32;
            put(&mut self.file, 60, &n.to_be_bytes());
            put(&mut self.file, 64, &at.to_be_bytes());
        }
        // Refcount blocks at the end, covering themselves too.
        let per = self.cs * 8 / 16;
        let mut blocks = 0;
        while (self.file.len() as u64).div_ceil(self.cs) + blocks > blocks * per {
            blocks += 1;
        }
        assert!(blocks * 8 <= self.cs, "the writer keeps the refcount table in one cluster");
        let first = (self.file.len() as u64).next_multiple_of(self.cs);
        for b in 0..blocks {
            let at = self.alloc();
            assert_eq!(at, first + b * self.cs);
            self.set(self.reft + b * 8, at);
        }
        let refs = self.refs.clone();
        for (c, &r) in refs.iter().enumerate() {
            let (b, k) = (c as u64 / per, c as u64 % per);
            put(&mut self.file, first + b * self.cs + k * 2, &r.to_be_bytes());
        }
        // COPIED: set exactly where the refcount is 1.
        for i in 0..self.l1_entries {
            let l1e = self.l1 + i * 8;
            let l2 = self.get(l1e) & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            self.set(l1e, l2 | if self.rc(l2) == 1 { OFLAG_COPIED } else { 0 });
            for k in 0..self.l2_entries() {
                let at = l2 + k * self.eb();
                let e = self.get(at);
                if e & OFLAG_COMPRESSED != 0 || e & L2E_OFFSET_MASK == 0 {
                    continue;
                }
                let one = self.data_file.is_some() || self.rc(e & L2E_OFFSET_MASK) == 1;
                self.set(at, (e & !OFLAG_COPIED) | if one { OFLAG_COPIED } else { 0 });
            }
        }
        self
    }
}

pub static DEMO: Demo = Demo {
    name: "qcow2",
    title: "qcow2 v3 with a snapshot and compressed clusters, over a raw backing file",
    about: "Data clusters, deflate-compressed clusters, clusters marked zero, an internal snapshot taken before the last writes (so some clusters are shared and some were copied), and the rest read from base.raw.",
    qemu: Some("qcow2"),
    build,
};

fn build() -> Sample {
    const CS: u64 = 64 << 10;
    let mut w = Writer::new(16, 4 << 20, true, false, Some(("base.raw", Some("raw"))));
    let label = |c: u64| text(&alloc::format!("qcow2 sample, guest cluster {}", c), CS as usize);
    for c in [0, 1, 2, 3, 4] {
        w.write_bytes(c * CS, &label(c));
    }
    for c in [12, 13, 14, 15] {
        w.write_compressed(c * CS, &label(c));
    }
    w.snapshot("1", "installed");
    for c in [2, 30, 31, 32, 33, 50] {
        w.write_bytes(c * CS, &label(c + 1000));
    }
    for c in [20, 21, 22] {
        w.zero_cluster(c * CS, false);
    }
    let w = w.finish();
    Sample::new([("sample.qcow2", w.file), ("base.raw", text("raw backing file of the qcow2 sample", 3 << 20))])
}
