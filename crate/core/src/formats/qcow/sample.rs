//! qcow v1 written as QEMU writes it, by the writer the tests use, and the demo sample.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{vec, vec::Vec};

use crate::samples::{text, Demo, Sample};

pub(crate) use crate::samples::{get64, put};

pub(crate) struct Writer {
    pub cs: u64,
    pub bits: u32,
    pub l2_bits: u32,
    pub file: Vec<u8>,
    pub l1: u64,
    /// Compressed clusters written over (their data stays in the file, unused).
    pub overwritten_compressed: u64,
}

impl Writer {
    pub fn new(bits: u32, l2_bits: u32, size: u64, backing: Option<&str>) -> Writer {
        let cs = 1u64 << bits;
        let l1_entries = size.div_ceil(1 << (bits + l2_bits));
        let mut f = vec![0u8; 48];
        put(&mut f, 0, b"QFI\xfb");
        put(&mut f, 4, &1u32.to_be_bytes());
        put(&mut f, 24, &size.to_be_bytes());
        f[32] = bits as u8;
        f[33] = l2_bits as u8;
        put(&mut f, 40, &48u64.to_be_bytes());
        f.resize(48 + l1_entries as usize * 8, 0);
        if let Some(b) = backing {
            let at = f.len() as u64;
            put(&mut f, 8, &at.to_be_bytes());
            put(&mut f, 16, &(b.len() as u32).to_be_bytes());
            put(&mut f, at, b.as_bytes());
        }
        Writer { cs, bits, l2_bits, file: f, l1: 48, overwritten_compressed: 0 }
    }

    pub fn alloc(&mut self, bytes: u64) -> u64 {
        let at = (self.file.len() as u64).next_multiple_of(self.cs);
        self.file.resize((at + bytes) as usize, 0);
        at
    }

    pub fn l2_entry(&mut self, guest: u64) -> u64 {
        let n = 1u64 << self.l2_bits;
        let (i, j) = (guest / self.cs / n, guest / self.cs % n);
        let l1e = self.l1 + i * 8;
        if get64(&self.file, l1e) == 0 {
            let t = self.alloc(n * 8);
            put(&mut self.file, l1e, &t.to_be_bytes());
        }
        get64(&self.file, l1e) + j * 8
    }

    pub fn write_cluster(&mut self, guest: u64, fill: u8) {
        let e = self.l2_entry(guest);
        let mut at = get64(&self.file, e);
        if at >> 63 != 0 {
            self.overwritten_compressed += 1;
        }
        if at == 0 || at >> 63 != 0 {
            at = self.alloc(self.cs);
            put(&mut self.file, e, &at.to_be_bytes());
        }
        put(&mut self.file, at, &vec![fill; self.cs as usize]);
    }

    pub fn write_compressed(&mut self, guest: u64, data: &[u8]) {
        let e = self.l2_entry(guest);
        if get64(&self.file, e) != 0 {
            self.overwritten_compressed += 1;
        }
        let packed = miniz_oxide::deflate::compress_to_vec(data, 6);
        assert!((packed.len() as u64) < self.cs, "incompressible data is stored plainly by QEMU");
        let off = self.file.len() as u64;
        put(&mut self.file, off, &packed);
        let shift = 63 - self.bits;
        put(&mut self.file, e, &((1u64 << 63) | (packed.len() as u64) << shift | off).to_be_bytes());
    }
}

pub static DEMO: Demo = Demo {
    name: "qcow",
    title: "qcow (version 1) with compressed clusters, over a raw backing file",
    about: "Plain data clusters, zlib-compressed clusters, and unallocated clusters that read from base.raw.",
    qemu: Some("qcow"),
    build,
};

fn build() -> Sample {
    const CS: u64 = 16 << 10;
    let mut w = Writer::new(14, 9, 4 << 20, Some("base.raw"));
    for (c, fill) in [(0u64, 0x51u8), (1, 0x52), (2, 0x53), (40, 0x54), (41, 0x55), (200, 0x56)] {
        w.write_cluster(c * CS, fill);
    }
    for c in [100u64, 101, 102, 103, 104, 105] {
        w.write_compressed(c * CS, &text(&alloc::format!("qcow sample, guest cluster {}", c), CS as usize));
    }
    Sample::new([("sample.qcow", w.file), ("base.raw", text("raw backing file of the qcow sample", 1 << 20))])
}
