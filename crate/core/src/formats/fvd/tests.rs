//! FVD images of the three variants written by a writer kept here from the spec tables
//! (DECISIONS.md 1, FORMATS.md 3.1-3.9; the offset tables below are typed in from those
//! pages, not taken from header.rs), read back through a chain and compared with a model.
//! Junk (0xEE) stands wherever a wrong mapping would read: FVD storage of blocks still in
//! the base image, a chunk only a stale journal record points to, the base image past
//! base_img_size.
use alloc::{format, string::String, vec, vec::Vec};
use proptest::prelude::*;

use super::journal::{BITMAP_JRECORD, DIRTY, EMPTY, TABLE_JRECORD};
use crate::chain::Chain;
use crate::convert::Part;
use crate::image::OpenOptions;
use crate::io::MemFile;
use crate::model::{LayoutStatus, Severity};
use crate::testutil::Files;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    A,
    B,
    C,
}

/// (field, offset, size), as FORMATS.md 3.1 lists variant A.
const A_TABLE: &[(&str, usize, usize)] = &[
    ("magic", 0, 4), ("version", 4, 4), ("all_data_in_fvd_img", 8, 4), ("virtual_disk_size", 12, 8),
    ("metadata_size", 20, 8), ("base_img", 28, 1024), ("base_img_fmt", 1052, 16), ("base_img_size", 1068, 8),
    ("bitmap_offset", 1076, 8), ("bitmap_size", 1084, 8), ("block_size", 1092, 4), ("copy_on_read", 1096, 4),
    ("max_outstanding_copy_on_read_data", 1100, 8), ("data_file", 1108, 1024), ("data_file_fmt", 2132, 16),
    ("prefetch_start_delay", 2148, 4), ("prefetch_profile_offset", 2152, 8), ("prefetch_profile_entries", 2160, 8),
    ("num_prefetch_slots", 2168, 4), ("bytes_per_prefetch", 2172, 4), ("prefetch_read_throughput_measure_time", 2176, 4),
    ("prefetch_write_throughput_measure_time", 2180, 4), ("prefetch_perf_calc_alpha", 2184, 4),
    ("prefetch_min_read_throughput", 2188, 4), ("prefetch_min_write_throughput", 2192, 4),
    ("prefetch_max_read_throughput", 2196, 4), ("prefetch_max_write_throughput", 2200, 4),
    ("prefetch_throttle_time", 2204, 4), ("compact_image", 2208, 4), ("table_offset", 2212, 8), ("chunk_size", 2220, 8),
    ("storage_grow_unit", 2228, 8), ("add_storage_cmd", 2236, 2048), ("journal_offset", 4284, 8), ("journal_size", 4292, 8),
    ("clean_shutdown", 4300, 4), ("need_zero_init", 4304, 4), ("generate_prefetch_profile", 4308, 4),
    ("unit_of_PrefetchProfileEntry_len", 4312, 4), ("profile_directed_prefetch_start_delay", 4316, 4),
    ("write_updates_base_img", 4320, 16),
];

/// FORMATS.md 3.9 (the wiki's struct), variant B.
const B_TABLE: &[(&str, usize, usize)] = &[
    ("magic", 0, 4), ("version", 4, 4), ("virtual_disk_size", 8, 8), ("data_offset", 16, 8), ("data_file", 24, 1024),
    ("data_file_fmt", 1048, 16), ("base_img", 1064, 1024), ("base_img_fmt", 2088, 16), ("base_img_size", 2104, 8),
    ("bitmap_offset", 2112, 8), ("bitmap_size", 2120, 8), ("block_size", 2128, 8), ("table_offset", 2136, 8),
    ("table_size", 2144, 8), ("chunk_size", 2152, 8), ("storage_grow_unit", 2160, 8), ("add_storage_cmd", 2168, 1024),
    ("journal_offset", 3192, 8), ("journal_size", 3200, 8), ("stable_journal_epoch", 3208, 8), ("clean_shutdown", 3216, 4),
    ("copy_on_read", 3220, 4), ("max_outstanding_copy_on_read_data", 3224, 8), ("prefetch_start_delay", 3232, 8),
    ("base_img_fully_prefetched", 3240, 4), ("num_prefetch_slots", 3244, 4), ("bytes_per_prefetch", 3248, 8),
    ("prefetch_min_read_throughput", 3256, 8), ("prefetch_max_read_throughput", 3264, 8),
    ("prefetch_min_write_throughput", 3272, 8), ("prefetch_max_write_throughput", 3280, 8), ("prefetch_throttle_time", 3288, 8),
    ("prefetch_read_throughput_measure_time", 3296, 8), ("prefetch_write_throughput_measure_time", 3304, 8),
    ("need_zero_init", 3312, 4), ("reserved", 3316, 4096),
];

/// DECISIONS.md 1, variant C (seed 002's struct).
const C_TABLE: &[(&str, usize, usize)] = &[
    ("magic", 0, 4), ("header_size", 4, 4), ("create_version", 8, 4), ("last_open_version", 12, 4),
    ("virtual_disk_size", 16, 8), ("data_offset", 24, 8), ("data_file", 32, 1024), ("data_file_fmt", 1056, 16),
    ("base_img", 1072, 1024), ("base_img_fmt", 2096, 16), ("base_img_size", 2112, 8), ("bitmap_offset", 2120, 8),
    ("bitmap_size", 2128, 8), ("block_size", 2136, 8), ("journal_offset", 2144, 8), ("journal_size", 2152, 8),
    ("clean_shutdown", 2160, 4), ("stable_journal_epoch", 2164, 8), ("journal_buf_size", 2172, 8),
    ("journal_clean_buf_period", 2180, 8), ("table_offset", 2188, 8), ("table_size", 2196, 8), ("chunk_size", 2204, 8),
    ("storage_grow_unit", 2212, 8), ("add_storage_cmd", 2220, 1024), ("chunks_relocated", 3244, 4), ("copy_on_read", 3248, 4),
    ("max_outstanding_copy_on_read_data", 3252, 8), ("prefetch_start_delay", 3260, 8), ("base_img_fully_prefetched", 3268, 4),
    ("num_prefetch_slots", 3272, 4), ("bytes_per_prefetch", 3276, 8), ("prefetch_read_throughput_measure_time", 3284, 8),
    ("prefetch_write_throughput_measure_time", 3292, 8), ("prefetch_min_read_throughput", 3300, 8),
    ("prefetch_min_write_throughput", 3308, 8), ("prefetch_max_read_throughput", 3316, 8),
    ("prefetch_max_write_throughput", 3324, 8), ("prefetch_throttle_time", 3332, 8), ("need_zero_init", 3340, 4),
    ("incompatible_features", 3344, 4096),
];

fn table(v: V) -> &'static [(&'static str, usize, usize)] {
    match v {
        V::A => A_TABLE,
        V::B => B_TABLE,
        V::C => C_TABLE,
    }
}

fn lcg(s: &mut u64) -> u64 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *s >> 33
}

const JUNK: u8 = 0xEE;
const HEADER: usize = 8192;
const STABLE: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataOpt {
    /// Data in the FVD file.
    Own,
    /// Data in "data.raw".
    Raw,
    /// Data in "data.qed", a QED image.
    Qed,
}

#[derive(Debug, Clone)]
struct Opts {
    v: V,
    vsize: u64,
    block: u64,
    /// Compact image with this chunk size.
    chunk: Option<u64>,
    /// (base_img_size in the header, length of the base file).
    base: Option<(u64, u64)>,
    data: DataOpt,
    journal_sectors: usize,
    /// clean_shutdown = 0.
    dirty: bool,
}

/// An FVD image being written: metadata as stored, the journal, and the model.
struct W {
    o: Opts,
    head: Vec<u8>,
    /// Stored bitmap bits (one per block below base_img_size) and the replayed view's.
    bits: Vec<bool>,
    bits_rep: Vec<bool>,
    /// Stored table (entries as on disk) and whether the replayed view has each chunk.
    table: Vec<u32>,
    table_rep: Vec<Option<u32>>,
    /// Data storage: file offset from the data start.
    store: Vec<u8>,
    next_id: u32,
    journal: Vec<u8>,
    jpos: usize,
    /// What FVD storage holds for each guest byte (the model).
    content: Vec<u8>,
    base: Vec<u8>,
    seed: u64,
}

impl W {
    fn new(o: Opts, seed: u64) -> W {
        let mut s = seed;
        let (base_size, base_len) = o.base.unwrap_or((0, 0));
        let base: Vec<u8> = (0..base_len).map(|_| (lcg(&mut s) as u8) | 1).collect();
        let nbits = if o.base.is_some() { base_size.min(o.vsize).div_ceil(o.block) as usize } else { 0 };
        let entries = o.chunk.map_or(0, |c| o.vsize.div_ceil(c) as usize);
        let content = (0..o.vsize).map(|x| if x < base_size { JUNK } else { 0 }).collect();
        let store = if o.chunk.is_some() { Vec::new() } else { (0..o.vsize).map(|x| if x < base_size { JUNK } else { 0 }).collect() };
        W {
            head: vec![0u8; HEADER],
            bits: vec![false; nbits],
            bits_rep: vec![false; nbits],
            table: vec![EMPTY; entries],
            table_rep: vec![None; entries],
            store,
            next_id: 0,
            journal: vec![0u8; o.journal_sectors * 512],
            jpos: 0,
            content,
            base,
            seed: s,
            o,
        }
    }

    fn rnd(&mut self) -> u64 {
        lcg(&mut self.seed)
    }

    fn set(&mut self, name: &str, v: u64) {
        let &(_, off, size) = table(self.o.v).iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no field {}", name));
        self.head[off..off + size].copy_from_slice(&v.to_le_bytes()[..size]);
    }

    fn set_str(&mut self, name: &str, t: &str) {
        let &(_, off, _) = table(self.o.v).iter().find(|x| x.0 == name).unwrap();
        self.head[off..off + t.len()].copy_from_slice(t.as_bytes());
    }

    fn base_size(&self) -> u64 {
        self.o.base.map_or(0, |b| b.0.min(self.o.vsize))
    }

    /// Append a journal record, in the next sector when this one lacks room.
    fn record(&mut self, rec: &[u8]) {
        assert!(rec.len() <= 512);
        if self.jpos % 512 + rec.len() > 512 {
            self.jpos = self.jpos.next_multiple_of(512);
        }
        assert!(self.jpos + rec.len() <= self.journal.len(), "journal full");
        self.journal[self.jpos..self.jpos + rec.len()].copy_from_slice(rec);
        self.jpos += rec.len();
    }

    fn table_record(&mut self, epoch: u64, first: u32, entries: &[u32]) {
        let mut r = Vec::new();
        r.extend_from_slice(&TABLE_JRECORD.to_le_bytes());
        if self.o.v == V::A {
            r.extend_from_slice(&first.to_le_bytes());
            r.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        } else {
            r.extend_from_slice(&epoch.to_le_bytes());
            r.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            r.extend_from_slice(&first.to_le_bytes());
        }
        for e in entries {
            r.extend_from_slice(&e.to_le_bytes());
        }
        self.record(&r);
    }

    fn bitmap_record(&mut self, sector: u64, sectors: u32) {
        let mut r = Vec::new();
        r.extend_from_slice(&BITMAP_JRECORD.to_le_bytes());
        r.extend_from_slice(&sectors.to_le_bytes());
        r.extend_from_slice(&sector.to_le_bytes());
        self.record(&r);
    }

    /// Allocate storage for a chunk: a new id holding the chunk's current content.
    fn allocate(&mut self, c: usize) -> u32 {
        let chunk = self.o.chunk.unwrap() as usize;
        let id = self.next_id;
        self.next_id += 1;
        let at = id as usize * chunk;
        self.store.resize(at + chunk, 0);
        let (s, e) = (c * chunk, ((c + 1) * chunk).min(self.o.vsize as usize));
        self.store[at..at + (e - s)].copy_from_slice(&self.content[s..e]);
        id
    }

    /// A chunk id that nothing current points to, filled with junk.
    fn junk_chunk(&mut self) -> u32 {
        let chunk = self.o.chunk.unwrap() as usize;
        let id = self.next_id;
        self.next_id += 1;
        self.store.resize((id as usize + 1) * chunk, JUNK);
        id
    }

    /// The guest writes block `k` with `fill`; its metadata update is flushed, or only in
    /// the journal.
    fn write_block(&mut self, k: u64, fill: u8, journaled: bool) {
        let (s, e) = (k * self.o.block, ((k + 1) * self.o.block).min(self.o.vsize));
        self.content[s as usize..e as usize].fill(fill);
        let epoch = STABLE + (self.rnd() % 3);
        let mut table_entry = None;
        if let Some(chunk) = self.o.chunk {
            for c in (s / chunk) as usize..=((e - 1) / chunk) as usize {
                let id = match self.table_rep[c] {
                    Some(id) => id,
                    None => {
                        let id = self.allocate(c);
                        self.table_rep[c] = Some(id);
                        id
                    }
                };
                let dirty = if self.rnd() % 3 == 0 { DIRTY } else { 0 };
                if journaled {
                    if self.table[c] == EMPTY {
                        table_entry = Some((c as u32, id | dirty));
                    }
                } else {
                    self.table[c] = id | dirty;
                }
                // Write the block's bytes into the chunk's storage.
                let (a, b) = (s.max(c as u64 * chunk), e.min((c as u64 + 1) * chunk));
                let at = (id as u64 * chunk + a % chunk) as usize;
                let fillv = self.content[a as usize];
                self.store[at..at + (b - a) as usize].fill(fillv);
            }
        } else {
            self.store[s as usize..e as usize].fill(fill);
        }
        if let Some((c, entry)) = table_entry {
            self.table_record(epoch, c, &[entry]);
        }
        if (k as usize) < self.bits.len() {
            self.bits_rep[k as usize] = true;
            if journaled {
                // Ending short of the block's edge: replay must still mark the whole block.
                let n = (e - s) / 512;
                self.bitmap_record(s / 512, (n - 1).max(1) as u32);
            } else {
                self.bits[k as usize] = true;
            }
        }
    }

    /// Guest bytes as the view with (replayed) or without the journal reads them.
    fn expect(&self, replayed: bool) -> Vec<u8> {
        let base_size = self.base_size();
        (0..self.o.vsize)
            .map(|x| {
                let k = (x / self.o.block) as usize;
                if x < base_size && !(if replayed { self.bits_rep[k] } else { self.bits[k] }) {
                    return self.base.get(x as usize).copied().unwrap_or(0);
                }
                if let Some(chunk) = self.o.chunk {
                    let c = (x / chunk) as usize;
                    let present = if replayed { self.table_rep[c].is_some() } else { self.table[c] != EMPTY };
                    if !present {
                        return 0;
                    }
                }
                self.content[x as usize]
            })
            .collect()
    }

    /// The files: "t.fvd", the base "base.raw", the data file if any.
    fn finish(&mut self) -> Files {
        let o = self.o.clone();
        let page = |n: u64| n.next_multiple_of(4096);
        let bitmap_bytes = page((self.bits.len() as u64).div_ceil(8));
        let table_bytes = page(self.table.len() as u64 * 4);
        let journal_bytes = page(self.journal.len() as u64);
        let mut at = HEADER as u64;
        let bitmap_off = at;
        at += bitmap_bytes;
        let (table_off, journal_off);
        if o.v == V::A {
            table_off = at;
            at += table_bytes;
            journal_off = at;
            at += journal_bytes;
        } else {
            journal_off = at;
            at += journal_bytes;
            table_off = at;
            at += table_bytes;
        }
        let data_off = at;
        let own = o.data == DataOpt::Own;
        match o.v {
            V::A => {
                self.head[0..4].copy_from_slice(&[0xA9, 0xF5, 0x43, 0x51]);
                self.set("version", 1);
                self.set("metadata_size", if own { data_off } else { 0 });
                self.set("compact_image", o.chunk.is_some() as u64);
                self.set("prefetch_perf_calc_alpha", 80);
                self.set("unit_of_PrefetchProfileEntry_len", 512);
                self.set("profile_directed_prefetch_start_delay", u64::MAX);
                self.set_str("write_updates_base_img", "no");
            }
            V::B | V::C => {
                self.head[0..4].copy_from_slice(b"FVD\0");
                if o.v == V::B {
                    self.set("version", 1);
                } else {
                    self.set("header_size", HEADER as u64);
                    self.set("create_version", 1);
                    self.set("last_open_version", 2);
                    self.set("journal_buf_size", 65536);
                    self.set("journal_clean_buf_period", 5000);
                }
                self.set("data_offset", if own { data_off } else { 0 });
                self.set("table_size", if o.chunk.is_some() { table_bytes } else { 0 });
                self.set("stable_journal_epoch", STABLE);
            }
        }
        self.set("virtual_disk_size", o.vsize);
        if let Some((bs, _)) = o.base {
            self.set_str("base_img", "base.raw");
            self.set("base_img_size", bs);
            self.set("bitmap_offset", bitmap_off);
            self.set("bitmap_size", bitmap_bytes);
        }
        self.set("block_size", o.block);
        if let Some(c) = o.chunk {
            self.set("table_offset", table_off);
            self.set("chunk_size", c);
        }
        self.set("storage_grow_unit", 100 << 20);
        self.set_str("add_storage_cmd", "grow-storage.sh");
        if !self.journal.is_empty() {
            self.set("journal_offset", journal_off);
            self.set("journal_size", journal_bytes);
        }
        self.set("clean_shutdown", !o.dirty as u64);
        self.set("copy_on_read", 1);
        self.set("max_outstanding_copy_on_read_data", 2_000_000);
        self.set("prefetch_start_delay", u64::MAX); // -1: disabled
        self.set("num_prefetch_slots", 2);
        self.set("bytes_per_prefetch", 1 << 20);
        self.set("prefetch_read_throughput_measure_time", 100);
        self.set("prefetch_write_throughput_measure_time", 101);
        self.set("prefetch_min_read_throughput", 5120);
        self.set("prefetch_min_write_throughput", 5121);
        self.set("prefetch_max_read_throughput", 1_000_000);
        self.set("prefetch_max_write_throughput", 1_000_001);
        self.set("prefetch_throttle_time", 30000);
        let mut img = self.head.clone();
        img.resize(data_off as usize, 0);
        for (k, &b) in self.bits.iter().enumerate() {
            if b {
                img[bitmap_off as usize + k / 8] |= 1 << (k % 8);
            }
        }
        for (c, e) in self.table.iter().enumerate() {
            let at = table_off as usize + 4 * c;
            img[at..at + 4].copy_from_slice(&e.to_le_bytes());
        }
        img[journal_off as usize..journal_off as usize + self.journal.len()].copy_from_slice(&self.journal);
        // Trailing zeros are left out: a sparse end of the data reads as zeros.
        let mut store = self.store.clone();
        while store.last() == Some(&0) {
            store.pop();
        }
        let mut files = Files::default();
        match o.data {
            DataOpt::Own => img.extend_from_slice(&store),
            DataOpt::Raw => {
                self.set_str("data_file", "data.raw");
                img[..HEADER].copy_from_slice(&self.head);
                files.0.insert(String::from("data.raw"), store);
            }
            DataOpt::Qed => {
                self.set_str("data_file", "data.qed");
                self.set_str("data_file_fmt", "qed");
                img[..HEADER].copy_from_slice(&self.head);
                let size = (self.store.len() as u64).next_multiple_of(4096).max(4096);
                let mut q = crate::formats::qed::tests::Writer::new(4096, 1, size, None);
                for (i, cl) in self.store.chunks(4096).enumerate() {
                    assert!(cl.iter().all(|&b| b == cl[0]), "the QED writer stores uniform clusters only");
                    if cl[0] != 0 {
                        q.write_cluster(i as u64 * 4096, cl[0]);
                    }
                }
                files.0.insert(String::from("data.qed"), q.file.clone());
            }
        }
        if o.base.is_some() {
            files.0.insert(String::from("base.raw"), self.base.clone());
        }
        files.0.insert(String::from("t.fvd"), img);
        files
    }
}

/// A writer with random guest writes, some flushed and some only in the journal; in B and
/// C also a stale record pointing at junk and an epoch-ordering pair.
fn build(o: Opts, seed: u64) -> (W, Files) {
    let mut w = W::new(o.clone(), seed);
    let blocks = o.vsize.div_ceil(o.block);
    for _ in 0..blocks * 2 / 3 {
        let k = w.rnd() % blocks;
        let fill = (w.rnd() as u8 % 200) + 1;
        let journaled = o.journal_sectors > 0 && w.rnd() % 3 == 0;
        w.write_block(k, fill, journaled);
    }
    if o.journal_sectors > 0 && o.chunk.is_some() && o.v != V::A {
        let junk = w.junk_chunk();
        // Stale: older than stable_journal_epoch, so recovery must ignore it.
        let c1 = (w.rnd() % w.table.len() as u64) as u32;
        let c2 = (w.rnd() % w.table.len() as u64) as u32;
        w.table_record(STABLE - 2, c1, &[junk, junk | DIRTY]);
        w.table_record(STABLE - 1, c2, &[junk]);
        // A newer epoch wins over an older one that comes later in the journal.
        if let Some(c) = (0..w.table.len()).find(|&c| w.table_rep[c].is_some()) {
            let id = w.table_rep[c].unwrap();
            w.table_record(STABLE + 9, c as u32, &[id]);
            w.table_record(STABLE, c as u32, &[junk]);
        }
    }
    let files = w.finish();
    (w, files)
}

fn open(files: &Files, as_stored: bool) -> crate::error::Result<Chain> {
    let opts = OpenOptions { as_stored, snapshot: None };
    Chain::open_with("t.fvd", alloc::sync::Arc::new(MemFile(files.0["t.fvd"].clone())), None, files, &opts)
}

fn read_all(c: &Chain) -> Vec<u8> {
    let mut b = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut b).unwrap();
    b
}

/// The raw output as the export plan builds it: file ranges, zero runs, computed runs.
fn plan_bytes(c: &Chain) -> Vec<u8> {
    let mut out = Vec::new();
    c.plan(|p| {
        match p {
            Part::File { layer, file, offset, length } => {
                let f = c.layers[layer as usize].image.file(file).unwrap();
                let mut b = vec![0u8; length as usize];
                crate::io::read_clipped(&**f, offset, &mut b)?;
                out.extend_from_slice(&b);
            }
            Part::Zero { length } => out.resize(out.len() + length as usize, 0),
            Part::Computed { start, length } => {
                let mut b = vec![0u8; length as usize];
                c.read(start, &mut b)?;
                out.extend_from_slice(&b);
            }
        }
        Ok(())
    })
    .unwrap();
    out
}

fn opts(v: V) -> Opts {
    Opts {
        v,
        vsize: 96 * 4096 + 1024,
        block: 4096,
        chunk: None,
        base: Some((40 * 4096 + 512, 50 * 4096)),
        data: DataOpt::Own,
        journal_sectors: 16,
        dirty: true,
    }
}

fn configs() -> Vec<Opts> {
    let mut out = Vec::new();
    for v in [V::A, V::B, V::C] {
        let o = opts(v);
        out.push(o.clone());
        out.push(Opts { chunk: Some(16384), ..o.clone() });
        out.push(Opts { chunk: Some(8192), data: DataOpt::Raw, ..o.clone() });
        out.push(Opts { data: DataOpt::Raw, base: Some((60 * 4096, 30 * 4096 + 7)), ..o.clone() });
        out.push(Opts { chunk: Some(16384), dirty: false, ..o.clone() });
        out.push(Opts { chunk: Some(4096), base: None, ..o.clone() });
        out.push(Opts { journal_sectors: 0, dirty: false, block: 8192, ..o.clone() });
    }
    out
}

#[test]
fn every_variant_reads_as_the_model_replayed_and_as_stored() {
    for (i, o) in configs().into_iter().enumerate() {
        let (w, files) = build(o.clone(), 100 + i as u64);
        for as_stored in [false, true] {
            let chain = open(&files, as_stored).unwrap_or_else(|e| panic!("{:?}: {}", o, e));
            let want = w.expect(o.dirty && !as_stored);
            assert_eq!(chain.virtual_size(), o.vsize);
            let got = read_all(&chain);
            if let Some(x) = (0..got.len()).find(|&x| got[x] != want[x]) {
                panic!("{:?} as_stored={}: guest byte {} reads {:#x}, the model says {:#x}", o, as_stored, x, got[x], want[x]);
            }
            assert!(plan_bytes(&chain) == want, "{:?} as_stored={}: the export plan differs from the model", o, as_stored);
            let info = chain.top().info();
            assert_eq!(info.dirty, o.dirty);
            assert_eq!(info.layout, if o.v == V::C { LayoutStatus::Reconstructed } else { LayoutStatus::Confirmed });
            assert!(info.variant.starts_with(&format!("FVD variant {:?}", o.v)), "{}", info.variant);
            if o.dirty {
                assert!(info.variant.contains("NOT SHUT DOWN CLEANLY"), "{}", info.variant);
            }
            assert_eq!(chain.layers.len(), if o.base.is_some() { 2 } else { 1 });
            let r = chain.top().check().unwrap();
            assert_eq!(r.corruptions, 0, "{:?} as_stored={}: {:#?}", o, as_stored, r.findings);
            let warnings: Vec<_> = r.findings.iter().filter(|f| f.severity == Severity::Warning).map(|f| f.code).collect();
            let allowed = ["not-shut-down-cleanly", "journal-record-range"];
            assert!(warnings.iter().all(|c| allowed.contains(c)), "{:?}: {:?}", o, r.findings);
            assert_eq!(warnings.contains(&"not-shut-down-cleanly"), o.dirty);
        }
    }
}

#[test]
fn a_nested_data_file_is_read_through_its_format() {
    for v in [V::A, V::C] {
        for chunk in [None, Some(8192)] {
            let o = Opts { chunk, data: DataOpt::Qed, vsize: 96 * 4096, base: Some((40 * 4096, 50 * 4096)), ..opts(v) };
            let (w, files) = build(o.clone(), 7);
            let chain = open(&files, false).unwrap();
            let c = &chain.top().info().companions[0];
            assert_eq!((c.role, c.name.as_str(), c.found.as_deref()), ("data file", "data.qed", Some("data.qed")));
            let want = w.expect(true);
            assert!(read_all(&chain) == want, "{:?}: guest bytes differ", o);
            assert!(plan_bytes(&chain) == want);
            let mut computed = 0;
            chain.plan(|p| {
                computed += matches!(p, Part::Computed { .. }) as u32;
                Ok(())
            })
            .unwrap();
            assert!(computed > 0);
        }
    }
}

#[test]
fn a_raw_data_file_is_planned_as_file_ranges_and_a_missing_one_is_named() {
    let o = Opts { chunk: Some(8192), data: DataOpt::Raw, ..opts(V::B) };
    let (_, mut files) = build(o, 3);
    let chain = open(&files, false).unwrap();
    let mut data_parts = 0;
    chain.plan(|p| {
        data_parts += matches!(p, Part::File { layer: 0, file: 1, .. }) as u32;
        Ok(())
    })
    .unwrap();
    assert!(data_parts > 0);
    files.0.remove("data.raw");
    let chain = open(&files, false).unwrap();
    let c = &chain.top().info().companions[0];
    assert_eq!((c.name.as_str(), c.offset, c.found.is_none()), ("data.raw", 24, true));
    let mut entries = Vec::new();
    chain.map(0, chain.virtual_size(), &mut entries).unwrap();
    let missing = entries.iter().find(|e| e.missing && e.present).expect("a range in the missing data file");
    let err = chain.read(missing.start, &mut [0u8; 512]).unwrap_err();
    assert!(matches!(&err, crate::Error::MissingFile { name, offset: 24, .. } if name == "data.raw"), "{:?}", err);
    let r = chain.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "data-file-missing" && f.message.contains("'data.raw'")));
}

#[test]
fn header_fields_stand_where_the_spec_tables_put_them() {
    for v in [V::A, V::B, V::C] {
        let (_, files) = build(Opts { chunk: Some(16384), ..opts(v) }, 1);
        let img = &files.0["t.fvd"];
        let chain = open(&files, false).unwrap();
        let fields = chain.top().header_fields();
        assert_eq!(fields.len(), table(v).len(), "{:?}: one field per spec row", v);
        let mut end = 0;
        for (f, &(name, off, size)) in fields.iter().zip(table(v)) {
            assert_eq!((f.name.as_str(), f.offset, f.size), (name, off as u64, size as u64), "{:?}", v);
            assert_eq!(&f.raw[..], &img[off..off + size], "{:?} {} raw bytes", v, name);
            assert!(!f.note.is_empty() && !f.value.is_empty(), "{:?} {}", v, name);
            assert_eq!(off, end, "{:?}: {} does not follow the previous field", v, name);
            end = off + size;
        }
        assert_eq!(end, [4336, 7412, 7440][v as usize], "{:?}: sizeof(FvdHeader)", v);
        let value = |n: &str| fields.iter().find(|f| f.name == n).unwrap().value.clone();
        assert_eq!(value("prefetch_start_delay"), "-1 (disabled)");
        assert_eq!(value("prefetch_throttle_time"), "30000 ms");
        assert_eq!(value("clean_shutdown"), "false (0)");
        assert_eq!(value("base_img"), "\"base.raw\"");
        assert_eq!(value("chunk_size"), "16 KiB (16384 bytes)");
        assert!(value("virtual_disk_size").contains(&format!("{}", 96 * 4096 + 1024)));
        if v == V::C {
            assert_eq!(value("incompatible_features"), "all zero");
            assert_eq!(value("header_size"), "8 KiB (8192 bytes)");
        }
    }
}

#[test]
fn journal_records_are_listed_with_stale_and_applied_flags() {
    for v in [V::A, V::B, V::C] {
        let (_, files) = build(Opts { chunk: Some(16384), ..opts(v) }, 5);
        for as_stored in [false, true] {
            let chain = open(&files, as_stored).unwrap();
            let records = chain.top().records();
            assert!(records.iter().any(|r| r.kind == "bitmap update"));
            assert!(records.iter().any(|r| r.kind == "table update"));
            assert!(records.iter().all(|r| r.kind != "malformed"), "{:?}", records);
            let stale = records.iter().filter(|r| r.stale).count();
            assert_eq!(stale, if v == V::A { 0 } else { 2 }, "{:?}", v);
            for r in &records {
                assert_eq!(r.applied, !as_stored && !r.stale, "{:?} {:?}", v, r);
                assert!(r.offset >= 8192 && r.length >= 16);
            }
            if v != V::A {
                let s = records.iter().find(|r| r.stale).unwrap();
                assert!(s.note.contains("stale") && s.fields.iter().any(|(k, v)| k == "journal_epoch" && v == "3"), "{:?}", s);
            }
        }
    }
}

/// Journal bytes of an image built by `build`, for tests that damage them.
fn journal_at(files: &Files, v: V) -> usize {
    let img = &files.0["t.fvd"];
    let off = match v {
        V::A => 4284,
        V::B => 3192,
        V::C => 2144,
    };
    u64::from_le_bytes(img[off..off + 8].try_into().unwrap()) as usize
}

#[test]
fn a_clean_image_ignores_its_journal() {
    // Records that disagree with the metadata are history once the image was closed cleanly.
    for v in [V::A, V::C] {
        let o = Opts { chunk: Some(16384), dirty: false, ..opts(v) };
        let (w, files) = build(o, 9);
        let chain = open(&files, false).unwrap();
        assert!(read_all(&chain) == w.expect(false));
        assert!(chain.top().records().iter().all(|r| !r.applied && (r.stale || r.note.contains("shut down cleanly"))));
    }
}

#[test]
fn refusals_name_the_field() {
    let (_, files) = build(Opts { chunk: Some(16384), ..opts(V::C) }, 2);
    let img = files.0["t.fvd"].clone();
    let with = |at: usize, bytes: &[u8]| {
        let mut f = files.0.clone();
        let mut i = img.clone();
        i[at..at + bytes.len()].copy_from_slice(bytes);
        f.insert(String::from("t.fvd"), i);
        open(&Files(f), false).err().map(|e| (e.clone(), format!("{}", e)))
    };
    // Any non-zero byte of incompatible_features: refuse, at that byte.
    let (e, text) = with(3344 + 100, &[0x04]).unwrap();
    assert!(matches!(e, crate::Error::Unsupported { offset: 3444, .. }), "{:?}", e);
    assert!(text.contains("incompatible_features"), "{}", text);
    let (e, _) = with(3344 + 4095, &[0x80]).unwrap();
    assert!(matches!(e, crate::Error::Unsupported { offset: 7439, .. }), "{:?}", e);
    // Bad sizes.
    for (at, val) in [(2136usize, 1000u64), (2136, 0), (2204, 0), (2204, 4096 + 100), (2204, 1 << 40)] {
        let (e, _) = with(at, &val.to_le_bytes()).unwrap();
        assert!(matches!(e, crate::Error::Invalid { offset, .. } if offset == at as u64), "{} = {}: {:?}", at, val, e);
    }
    let (e, _) = with(16, &(1u64 << 60).to_le_bytes()).unwrap();
    assert!(matches!(e, crate::Error::Limit { .. }), "{:?}", e);
    // Neither B nor C after "FVD\0"; an unknown version.
    let (e, _) = with(4, &5000u32.to_le_bytes()).unwrap();
    assert!(matches!(e, crate::Error::Invalid { offset: 4, .. }), "{:?}", e);
    let (e, _) = with(4, &2u32.to_le_bytes()).unwrap();
    assert!(matches!(e, crate::Error::Unsupported { offset: 4, .. }), "{:?}", e);
    let mut a = vec![0u8; 8192];
    a[0..8].copy_from_slice(&[0xA9, 0xF5, 0x43, 0x51, 2, 0, 0, 0]);
    let e = open(&Files::new([("t.fvd", a)]), false).err().unwrap();
    assert!(matches!(e, crate::Error::Unsupported { offset: 4, .. }), "{:?}", e);
    // A header cut short.
    let e = open(&Files::new([("t.fvd", img[..5000].to_vec())]), false).err().unwrap();
    assert!(matches!(e, crate::Error::PastEnd { what: "FVD header", .. }), "{:?}", e);
    // Variant A and B: bad block size at their own offsets.
    for (v, at) in [(V::A, 1092usize), (V::B, 2128)] {
        let (_, files) = build(opts(v), 2);
        let mut i = files.0["t.fvd"].clone();
        i[at..at + 4].copy_from_slice(&700u32.to_le_bytes());
        let mut f = files.0.clone();
        f.insert(String::from("t.fvd"), i);
        assert!(matches!(open(&Files(f), false), Err(crate::Error::Invalid { offset, .. }) if offset == at as u64));
    }
}

fn put(files: &mut Files, at: usize, bytes: &[u8]) {
    let i = files.0.get_mut("t.fvd").unwrap();
    i[at..at + bytes.len()].copy_from_slice(bytes);
}

fn get32(files: &Files, at: usize) -> u32 {
    u32::from_le_bytes(files.0["t.fvd"][at..at + 4].try_into().unwrap())
}

#[test]
fn check_finds_what_was_broken_on_purpose() {
    // Compact variant B, dirty: the offsets are those of B's table.
    let o = Opts { chunk: Some(16384), ..opts(V::B) };
    let (w, mut files) = build(o.clone(), 21);
    let table_off = u64::from_le_bytes(files.0["t.fvd"][2136..2144].try_into().unwrap()) as usize;
    let journal = journal_at(&files, V::B);
    // Two entries with one id; an id far past the data.
    let ids: Vec<usize> = (0..w.table.len()).filter(|&c| w.table[c] != EMPTY).collect();
    let (c1, c2, c3) = (ids[0], ids[1], ids[2]);
    let first = get32(&files, table_off + 4 * c1);
    put(&mut files, table_off + 4 * c2, &first.to_le_bytes());
    put(&mut files, table_off + 4 * c3, &0x0100_0000u32.to_le_bytes());
    // A malformed record at the start of the last journal sector, and a table record whose
    // count does not fit in its sector.
    let last = journal + 15 * 512;
    put(&mut files, last, &0xDEAD_BEEFu32.to_le_bytes());
    let before = journal + 14 * 512;
    let mut rec = TABLE_JRECORD.to_le_bytes().to_vec();
    rec.extend_from_slice(&STABLE.to_le_bytes());
    rec.extend_from_slice(&200u32.to_le_bytes());
    rec.extend_from_slice(&0u32.to_le_bytes());
    put(&mut files, before, &rec);
    // A bitmap record past the end of the disk.
    let mut rec = BITMAP_JRECORD.to_le_bytes().to_vec();
    rec.extend_from_slice(&8u32.to_le_bytes());
    rec.extend_from_slice(&(o.vsize / 512).to_le_bytes());
    put(&mut files, journal + 13 * 512, &rec);
    let chain = open(&files, false).unwrap();
    let r = chain.top().check().unwrap();
    let has = |code: &str, off: usize| r.findings.iter().any(|f| f.code == code && f.offset == Some(off as u64));
    assert!(has("chunk-shared", table_off + 4 * c2), "{:#?}", r.findings);
    assert!(has("chunk-past-data", table_off + 4 * c3), "{:#?}", r.findings);
    assert!(has("journal-record-malformed", last), "{:#?}", r.findings);
    assert!(has("journal-record-malformed", before), "{:#?}", r.findings);
    assert!(has("journal-record-range", journal + 13 * 512), "{:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "table-dirty" && f.severity == Severity::Info));
    assert!(has("not-shut-down-cleanly", 3216));
    assert_eq!(r.exit_code(), 2);
    let records = chain.top().records();
    let bad = records.iter().find(|x| x.offset == last as u64).unwrap();
    assert_eq!(bad.kind, "malformed");
    assert!(bad.note.contains("0xdeadbeef"), "{}", bad.note);

    // Regions: the journal moved onto the table; the bitmap made too short.
    let (_, mut files) = build(o.clone(), 22);
    put(&mut files, 3192, &(table_off as u64).to_le_bytes());
    put(&mut files, 2120, &1u64.to_le_bytes());
    let r = open(&files, true).unwrap().top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "regions-overlap" && f.offset == Some(table_off as u64)), "{:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "bitmap-short" && f.offset == Some(2120)), "{:#?}", r.findings);

    // Compact: a bitmap bit 1 over an empty chunk reads zeros and is reported.
    let (w, mut files) = build(Opts { dirty: false, journal_sectors: 0, ..o.clone() }, 23);
    let table_off = u64::from_le_bytes(files.0["t.fvd"][2136..2144].try_into().unwrap()) as usize;
    let k = (0..w.bits.len()).find(|&k| w.bits[k]).unwrap();
    let c = k * 4096 / 16384;
    put(&mut files, table_off + 4 * c, &EMPTY.to_le_bytes());
    let chain = open(&files, false).unwrap();
    let r = chain.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "bitmap-without-chunk" && f.offset == Some((table_off + 4 * c) as u64)), "{:#?}", r.findings);
    let mut b = vec![1u8; 4096];
    chain.read(k as u64 * 4096, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));

    // A table shorter than the disk: the chunks past it are invalid, reads fail clearly.
    let (_, mut files) = build(Opts { dirty: false, ..o.clone() }, 24);
    let table_off = u64::from_le_bytes(files.0["t.fvd"][2136..2144].try_into().unwrap()) as usize;
    put(&mut files, 2144, &16u64.to_le_bytes()); // 4 entries
    let chain = open(&files, false).unwrap();
    let r = chain.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "table-short" && f.offset == Some(table_off as u64 + 16)), "{:#?}", r.findings);
    // Chunk 20 lies past base_img_size: always FVD data, here through no entry.
    let err = chain.read(20 * 16384, &mut [0u8; 512]).unwrap_err();
    assert!(matches!(err, crate::Error::CorruptMapping { offset, .. } if offset == table_off as u64 + 80), "{:?}", err);
}

#[test]
fn fully_prefetched_base_is_not_read_nor_needed() {
    for (v, at) in [(V::A, 8usize), (V::B, 3240), (V::C, 3268)] {
        let (w, mut files) = build(Opts { journal_sectors: 0, dirty: false, ..opts(v) }, 31);
        put(&mut files, at, &1u32.to_le_bytes());
        files.0.remove("base.raw");
        let chain = open(&files, false).unwrap();
        assert!(chain.broken.is_none() && chain.layers.len() == 1);
        // Every byte is FVD data now: junk where the base used to be read.
        let got = read_all(&chain);
        assert!((0..w.o.vsize as usize).all(|x| got[x] == w.content[x]), "{:?}", v);
        assert!(chain.top().check().unwrap().findings.iter().any(|f| f.code == "base-not-read"));
    }
}

/// Every numeric header field set, one at a time, to values at the edges: the image opens
/// or is refused, and nothing panics or runs away.
#[test]
fn extreme_field_values_never_panic() {
    let edges = [0u64, 1, 511, 4096, 1 << 31, 1 << 32, 1 << 53, 1 << 62, i64::MAX as u64, u64::MAX - 4096, u64::MAX - 1, u64::MAX];
    for v in [V::A, V::B, V::C] {
        for dirty in [false, true] {
            let o = Opts { vsize: 24 * 4096, chunk: Some(8192), base: Some((10 * 4096, 12 * 4096)), journal_sectors: 8, dirty, ..opts(v) };
            let (_, files) = build(o, 5);
            for &(name, off, size) in table(v) {
                if size > 8 || name == "magic" {
                    continue;
                }
                for e in edges {
                    let mut f = Files(files.0.clone());
                    put(&mut f, off, &e.to_le_bytes()[..size]);
                    for as_stored in [false, true] {
                        let Ok(chain) = open(&f, as_stored) else { continue };
                        let size = chain.virtual_size();
                        let mut entries = Vec::new();
                        let _ = chain.map(0, size.min(64 << 20), &mut entries);
                        let _ = chain.top().check();
                        let _ = chain.top().records();
                        let _ = crate::report::Report::new(&chain);
                        let mut buf = vec![0u8; 4096];
                        if size >= 4096 {
                            let _ = chain.read(size - 4096, &mut buf);
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    /// Any bytes written anywhere in a valid image of any variant: open, map, check, read,
    /// records and the report answer with a value or an error, never a panic.
    #[test]
    fn mutated_images_never_panic(
        v in 0usize..3,
        muts in prop::collection::vec((0usize..40000, any::<u64>(), 1usize..9), 1..10),
        header_hits in prop::collection::vec((0usize..64, any::<u64>()), 0..4),
        dirty in any::<bool>(),
    ) {
        let v = [V::A, V::B, V::C][v];
        let o = Opts { vsize: 24 * 4096, chunk: Some(8192), base: Some((10 * 4096, 12 * 4096)), journal_sectors: 8, dirty, ..opts(v) };
        let (_, mut files) = build(o, 77);
        let len = files.0["t.fvd"].len();
        for (at, val, n) in muts {
            let at = at % (len - 8);
            put(&mut files, at, &val.to_le_bytes()[..n]);
        }
        // Aim some mutations at the header's fields.
        for (k, val) in header_hits {
            let &(_, off, size) = &table(v)[k % table(v).len()];
            let n = size.min(8);
            put(&mut files, off, &val.to_le_bytes()[..n]);
        }
        for as_stored in [false, true] {
            if let Ok(chain) = open(&files, as_stored) {
                let size = chain.virtual_size();
                let mut entries = Vec::new();
                let _ = chain.map(0, size.min(64 << 20), &mut entries);
                let _ = chain.top().check();
                let _ = chain.top().records();
                let _ = chain.top().regions();
                let mut buf = vec![0u8; 8192];
                if size >= 8192 {
                    let _ = chain.read(0, &mut buf);
                    let _ = chain.read(size - 8192, &mut buf);
                }
                let _ = crate::report::Report::new(&chain);
            }
        }
    }
}

/// Small images of every variant, with and without chunks and journal, open and read as
/// their model; each is also a fuzz seed (the FVD file first, then its companions).
#[test]
fn fuzz_seeds_read_as_their_model() {
    for (i, o) in configs().into_iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let (w, files) = build(o.clone(), 11 + i as u64);
        let chain = open(&files, false).unwrap();
        assert!(read_all(&chain) == w.expect(o.dirty), "config {}", i);
        let mut parts: Vec<&[u8]> = vec![&files.0["t.fvd"]];
        parts.extend(files.0.iter().filter(|(n, _)| *n != "t.fvd").map(|(_, b)| &b[..]));
        crate::testutil::fuzz_seed("fmt_fvd", &alloc::format!("c{}", i), &parts);
    }
}
