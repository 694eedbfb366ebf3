//! Parallels written from docs/interop/parallels.txt by the writer the tests use, and the
//! demo sample.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{vec, vec::Vec};

use super::ext;
use super::header::*;
use super::md5;
use crate::samples::{Demo, Sample};

pub(crate) struct Writer {
    pub file: Vec<u8>,
    pub cluster: u64,
    pub ext_magic: bool,
}

impl Writer {
    /// Laid out as QEMU's parallels_co_create does (new magic: data area on a cluster
    /// boundary) or as old images are (old magic: data right after the BAT, data_off 0).
    pub fn new(size: u64, cluster: u64, ext_magic: bool) -> Writer {
        let entries = size.div_ceil(cluster);
        let bat_end = 64 + 4 * entries;
        let data = if ext_magic { bat_end.next_multiple_of(cluster) } else { bat_end.next_multiple_of(512) };
        let mut file = vec![0u8; data as usize];
        file[..16].copy_from_slice(if ext_magic { MAGIC_EXT } else { MAGIC_OLD });
        let put = |f: &mut Vec<u8>, at: usize, v: &[u8]| f[at..at + v.len()].copy_from_slice(v);
        put(&mut file, at::VERSION, &2u32.to_le_bytes());
        put(&mut file, at::HEADS, &16u32.to_le_bytes());
        put(&mut file, at::CYLINDERS, &((size / 512 / 16 / 32) as u32).to_le_bytes());
        put(&mut file, at::TRACKS, &((cluster / 512) as u32).to_le_bytes());
        put(&mut file, at::BAT_ENTRIES, &(entries as u32).to_le_bytes());
        put(&mut file, at::NB_SECTORS, &(size / 512).to_le_bytes());
        if ext_magic {
            put(&mut file, at::DATA_OFF, &((data / 512) as u32).to_le_bytes());
        }
        Writer { file, cluster, ext_magic }
    }
    pub fn unit(&self) -> u64 {
        if self.ext_magic {
            self.cluster
        } else {
            512
        }
    }
    pub fn entry(&self, i: u64) -> u32 {
        let at = 64 + 4 * i as usize;
        u32::from_le_bytes(self.file[at..at + 4].try_into().unwrap())
    }
    pub fn set_entry(&mut self, i: u64, v: u32) {
        let at = 64 + 4 * i as usize;
        self.file[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// Append one cluster (old magic: the file's end may be any sector).
    pub fn append(&mut self) -> u64 {
        let at = self.file.len() as u64;
        self.file.resize((at + self.cluster) as usize, 0);
        at
    }
    pub fn write(&mut self, i: u64, fill: u8) {
        let mut e = self.entry(i) as u64 * self.unit();
        if e == 0 {
            e = self.append();
            self.set_entry(i, (e / self.unit()) as u32);
        }
        self.file[e as usize..(e + self.cluster) as usize].fill(fill);
    }
    /// A Format Extension with one dirty bitmap (granularity in sectors) marking `dirty`
    /// granules, stored in as many clusters as it takes.
    pub fn add_bitmap(&mut self, id: [u8; 16], gran_sectors: u32, dirty: &[u64]) -> u64 {
        let ext_at = self.append();
        let total = u64::from_le_bytes(self.file[at::NB_SECTORS..at::NB_SECTORS + 8].try_into().unwrap());
        let granules = (total * 512).div_ceil(gran_sectors as u64 * 512);
        let per_cluster = self.cluster * 8;
        let l1_size = granules.div_ceil(per_cluster);
        let mut l1 = vec![0u64; l1_size as usize];
        for k in 0..l1_size {
            let mine: Vec<u64> = dirty.iter().copied().filter(|g| g / per_cluster == k).collect();
            if mine.is_empty() {
                continue;
            }
            let c = self.append();
            for g in mine {
                let bit = g % per_cluster;
                self.file[(c + bit / 8) as usize] |= 1 << (bit % 8);
            }
            l1[k as usize] = c / 512;
        }
        let x = ext_at as usize;
        let mut body = Vec::new();
        body.extend_from_slice(&ext::DIRTY_BITMAP.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&((32 + 8 * l1_size) as u32).to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&total.to_le_bytes());
        body.extend_from_slice(&id);
        body.extend_from_slice(&gran_sectors.to_le_bytes());
        body.extend_from_slice(&(l1_size as u32).to_le_bytes());
        for e in &l1 {
            body.extend_from_slice(&e.to_le_bytes());
        }
        body.extend_from_slice(&[0u8; 24]); // end of features
        self.file[x..x + 8].copy_from_slice(&ext::MAGIC.to_le_bytes());
        self.file[x + 24..x + 24 + body.len()].copy_from_slice(&body);
        let sum = md5::digest(&self.file[x + 24..x + self.cluster as usize]);
        self.file[x + 8..x + 24].copy_from_slice(&sum);
        self.file[at::EXT_OFF..at::EXT_OFF + 8].copy_from_slice(&(ext_at / 512).to_le_bytes());
        ext_at
    }
}

pub static DEMO: Demo = Demo {
    name: "parallels",
    title: "Parallels expanding disk",
    about: "Clusters allocated through the block allocation table in write order, so guest order and file order differ.",
    qemu: Some("parallels"),
    build,
};

fn build() -> Sample {
    let mut w = Writer::new(4 << 20, 64 << 10, true);
    for (i, fill) in [(3u64, 0x33u8), (0, 0x10), (1, 0x11), (20, 0x20), (21, 0x21), (40, 0x40), (63, 0x63)] {
        w.write(i, fill);
    }
    Sample::new([("sample.hds", w.file)])
}
