//! GOW v1, v2 and v3 written from the table in DECISIONS.md 4 by the writer the tests use
//! (held as a sparse file, so a 32 MiB v3 header costs nothing until it is written out),
//! and the demo samples.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{collections::BTreeMap, vec, vec::Vec};

use crate::io::SparseFile as Sparse;
use crate::samples::{Demo, Sample};

pub const B: u64 = 65536;

/// DECISIONS.md 4, by hand: (version, map entries N, header length H, data area start D).
pub const TABLE: [(u8, u64, u64, u64); 3] = [
    (1, 1_048_576, 4_194_328, 4_194_328),    // H = 24 + 4N, D = H (unaligned)
    (2, 4_194_304, 16_777_240, 16_777_728),  // H = 24 + 4N, D = H rounded up to 512
    (3, 4_194_304, 33_554_456, 33_554_944),  // H = 24 + 8N, D = H rounded up to 512
];

pub fn table(version: u8) -> (u64, u64, u64) {
    let (_, n, h, d) = TABLE[version as usize - 1];
    (n, h, d)
}

/// A GOW image as its description says one grows: a fixed header, data blocks appended in
/// the order they are first written, the map pointing at them (entry k = data block k-1).
pub struct Writer {
    pub version: u8,
    pub size: u64,
    pub flags: u32,
    pub session: u32,
    /// The header's allocated-block count; None writes the number of blocks.
    pub count: Option<u32>,
    /// Non-zero map entries by logical block (entries past the disk allowed).
    pub map: BTreeMap<u64, u32>,
    pub versions: BTreeMap<u64, u32>,
    /// Data blocks in file order.
    pub blocks: Vec<Vec<u8>>,
    /// Bytes missing from the last data block (a crash while the file grew).
    pub cut: u64,
    /// What the guest reads.
    pub model: Vec<u8>,
}

pub fn content(i: u64, fill: u8) -> Vec<u8> {
    (0..B).map(|j| fill ^ (j as u8).wrapping_mul(7) ^ (i as u8) | 1).collect()
}

impl Writer {
    pub fn new(version: u8, size: u64) -> Writer {
        Writer {
            version,
            size,
            flags: 0,
            session: if version == 3 { 1 } else { 0 },
            count: None,
            map: BTreeMap::new(),
            versions: BTreeMap::new(),
            blocks: Vec::new(),
            cut: 0,
            model: vec![0u8; size as usize],
        }
    }

    /// Write logical block `i` with bytes derived from `fill`, stamped `version` (v3).
    pub fn write(&mut self, i: u64, fill: u8, version: u32) {
        self.write_bytes(i, content(i, fill), version)
    }

    /// Write logical block `i` with `bytes` (one block of them), stamped `version` (v3).
    pub fn write_bytes(&mut self, i: u64, bytes: Vec<u8>, version: u32) {
        let k = match self.map.get(&i) {
            Some(&k) => k,
            None => {
                self.blocks.push(Vec::new());
                let k = self.blocks.len() as u32;
                self.map.insert(i, k);
                k
            }
        };
        self.blocks[k as usize - 1] = bytes.clone();
        let (a, b) = ((i * B) as usize, (((i + 1) * B).min(self.size)) as usize);
        self.model[a..b].copy_from_slice(&bytes[..b - a]);
        if self.version == 3 {
            self.versions.insert(i, version);
            self.session = self.session.max(version);
        }
    }

    /// The file ends `cut` bytes before the last data block's end; the model reads zeros there.
    pub fn cut_last(&mut self, cut: u64) {
        self.cut = cut;
        let last = self.blocks.len() as u32;
        if let Some((&i, _)) = self.map.iter().find(|(_, &k)| k == last) {
            let (a, b) = ((i * B + B - cut) as usize, (((i + 1) * B).min(self.size)) as usize);
            if a < b {
                self.model[a..b].fill(0);
            }
        }
    }

    pub fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&[b'G', b'O', b'W', b'0' + self.version]);
        h.extend_from_slice(&self.flags.to_le_bytes());
        h.extend_from_slice(&self.size.to_le_bytes());
        h.extend_from_slice(&self.count.unwrap_or(self.blocks.len() as u32).to_le_bytes());
        h.extend_from_slice(&self.session.to_le_bytes());
        h
    }

    pub fn file(&self) -> Sparse {
        let (n, _, d) = table(self.version);
        let mut f = Sparse { size: d + self.blocks.len() as u64 * B - self.cut, chunks: Vec::new() };
        f.poke(0, &self.header());
        for (&i, &k) in &self.map {
            f.poke(24 + 4 * i, &k.to_le_bytes());
        }
        for (&i, &v) in &self.versions {
            f.poke(24 + 4 * n + 4 * i, &v.to_le_bytes());
        }
        let mut data = Vec::with_capacity(self.blocks.len() * B as usize);
        for b in &self.blocks {
            data.extend_from_slice(b);
        }
        data.truncate(data.len() - self.cut as usize);
        f.poke(d, &data);
        f
    }
}

pub static DEMO: Demo = Demo {
    name: "gow",
    title: "GOW v3 with block versions",
    about: "Blocks written in several sessions: each carries the version it was last written in (switch the map to Versions), the map entries point at data blocks in the order they were appended.",
    qemu: None,
    build: || sample(3),
};

pub static DEMO_V1: Demo = Demo {
    name: "gow1",
    title: "GOW v1",
    about: "The first GOW layout: a map of 32-bit entries right after the header, data blocks appended in write order, no versions.",
    qemu: None,
    build: || sample(1),
};

fn sample(version: u8) -> Sample {
    let mut w = Writer::new(version, 4 << 20);
    for (i, fill, v) in [(0u64, 0x10u8, 1u32), (1, 0x11, 1), (2, 0x12, 1), (20, 0x20, 2), (21, 0x21, 2), (3, 0x13, 3), (40, 0x40, 4), (41, 0x41, 4), (63, 0x63, 5), (1, 0x71, 5)] {
        w.write(i, fill, v);
    }
    let name = if version == 3 { "sample.gow" } else { "sample-v1.gow" };
    Sample::new([(name, w.file().to_bytes())])
}
