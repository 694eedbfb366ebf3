//! QED written from the spec by the writer the tests use, and the demo sample made with it.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{vec, vec::Vec};

use crate::samples::{text, Demo, Sample};

/// A QED image laid out as the spec says: header cluster, L1 at cluster 1, then tables
/// and data clusters appended in allocation order.
pub(crate) struct Writer {
    pub cs: u64,
    pub table: u64,
    pub file: Vec<u8>,
    pub l1: u64,
    /// Data clusters dropped by `zero_cluster`: what check must report as leaked.
    pub leaked: u64,
}

impl Writer {
    pub fn new(cs: u64, table: u64, size: u64, backing: Option<&str>) -> Writer {
        let mut file = vec![0u8; (cs + table * cs) as usize];
        file[0..4].copy_from_slice(b"QED\0");
        file[4..8].copy_from_slice(&(cs as u32).to_le_bytes());
        file[8..12].copy_from_slice(&(table as u32).to_le_bytes());
        file[12..16].copy_from_slice(&1u32.to_le_bytes());
        file[40..48].copy_from_slice(&cs.to_le_bytes());
        file[48..56].copy_from_slice(&size.to_le_bytes());
        if let Some(b) = backing {
            file[16..24].copy_from_slice(&5u64.to_le_bytes()); // BACKING_FILE | NO_PROBE
            file[56..60].copy_from_slice(&64u32.to_le_bytes());
            file[60..64].copy_from_slice(&(b.len() as u32).to_le_bytes());
            file[64..64 + b.len()].copy_from_slice(b.as_bytes());
        }
        Writer { cs, table, file, l1: cs, leaked: 0 }
    }

    pub fn entries(&self) -> u64 {
        self.table * self.cs / 8
    }
    pub fn get(&self, at: u64) -> u64 {
        u64::from_le_bytes(self.file[at as usize..at as usize + 8].try_into().unwrap())
    }
    pub fn set(&mut self, at: u64, v: u64) {
        self.file[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
    pub fn append(&mut self, clusters: u64) -> u64 {
        let at = self.file.len() as u64;
        self.file.resize((at + clusters * self.cs) as usize, 0);
        at
    }
    /// The byte offset of the L2 entry for `guest`, allocating the L2 table if needed.
    pub fn l2_entry(&mut self, guest: u64) -> u64 {
        let n = self.entries();
        let (i, j) = (guest / self.cs / n, guest / self.cs % n);
        let l1e = self.l1 + i * 8;
        if self.get(l1e) == 0 {
            let t = self.append(self.table);
            self.set(l1e, t);
        }
        self.get(l1e) + j * 8
    }
    /// Store a whole cluster of data for the cluster holding `guest`.
    pub fn write_cluster(&mut self, guest: u64, fill: u8) {
        self.write_bytes(guest, &vec![fill; self.cs as usize]);
    }
    /// Store `data` (at most a cluster) at the start of the cluster holding `guest`.
    pub fn write_bytes(&mut self, guest: u64, data: &[u8]) {
        let e = self.l2_entry(guest);
        let mut at = self.get(e);
        if at <= 1 {
            at = self.append(1);
            self.set(e, at);
        }
        self.file[at as usize..at as usize + data.len()].copy_from_slice(data);
    }
    pub fn zero_cluster(&mut self, guest: u64) {
        let e = self.l2_entry(guest);
        if self.get(e) > 1 {
            self.leaked += 1;
        }
        self.set(e, 1);
    }
}

pub static DEMO: Demo = Demo {
    name: "qed",
    title: "QED over a raw backing file",
    about: "Data clusters in the image, clusters marked zero over the backing file, the rest read from base.raw (which is shorter than the disk: past its end the disk reads zeros).",
    qemu: Some("qed"),
    build,
};

fn build() -> Sample {
    const CS: u64 = 64 << 10;
    let mut w = Writer::new(CS, 4, 4 << 20, Some("base.raw"));
    for c in [0, 1, 2, 3, 9, 10, 24, 25, 26, 27, 28, 29, 40, 63] {
        w.write_bytes(c * CS, &text(&alloc::format!("QED sample, guest cluster {}", c), CS as usize));
    }
    for c in [5, 6, 7] {
        w.zero_cluster(c * CS);
    }
    Sample::new([("sample.qed", w.file), ("base.raw", text("raw backing file of the QED sample", (2 << 20) + 4096))])
}
