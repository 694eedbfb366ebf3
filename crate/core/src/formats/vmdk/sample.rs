//! VMDK written from the spec's tables by the writers the tests use (hosted sparse
//! extents, a stream-optimized file, descriptors), and the demo sample.
// Built with the demo samples too, which use only part of the tests' writer.
#![cfg_attr(not(test), allow(dead_code))]
use alloc::{format, string::String, vec, vec::Vec};

use super::sparse::{FLAG_COMPRESS, FLAG_MARKER, FLAG_NL_DETECT, FLAG_RGD, FLAG_ZERO_GRAIN, GD_AT_END};
use crate::samples::{text, Demo, Sample};

pub(crate) const S: u64 = 512;

pub(crate) fn put(b: &mut [u8], at: u64, v: &[u8]) {
    b[at as usize..at as usize + v.len()].copy_from_slice(v);
}
pub(crate) fn get32(b: &[u8], at: u64) -> u32 {
    u32::from_le_bytes(b[at as usize..at as usize + 4].try_into().unwrap())
}

/// A descriptor as QEMU writes it, with the given extent lines.
pub(crate) fn descriptor(cid: u32, parent_cid: u32, create_type: &str, parent: Option<&str>, extents: &[String]) -> String {
    let mut d = format!("# Disk DescriptorFile\nversion=1\nCID={:08x}\nparentCID={:08x}\ncreateType=\"{}\"\n", cid, parent_cid, create_type);
    if let Some(p) = parent {
        d.push_str(&format!("parentFileNameHint=\"{}\"\n", p));
    }
    d.push_str("\n# Extent description\n");
    for x in extents {
        d.push_str(x);
        d.push('\n');
    }
    d.push_str("\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n");
    d
}

/// A hosted sparse extent laid out as QEMU's vmdk_init_extent lays it out: header, the
/// descriptor in sectors 1-20, the redundant directory and tables, the directory and
/// tables, then grains appended in write order.
pub(crate) struct SparseWriter {
    pub file: Vec<u8>,
    pub grain: u64,
    pub gtes: u64,
    pub gd: u64,
    pub rgd: u64,
    pub compressed: bool,
}

impl SparseWriter {
    pub fn new(capacity: u64, grain_sectors: u64, compressed: bool, zero_grain: bool, desc: &str) -> SparseWriter {
        let gtes = 512u64;
        let grains = capacity.div_ceil(grain_sectors * S);
        let gt_count = grains.div_ceil(gtes);
        let gt_sectors = (gtes * 4).div_ceil(S);
        let gd_sectors = (gt_count * 4).div_ceil(S);
        let rgd = 21u64;
        let gd = rgd + gd_sectors + gt_sectors * gt_count;
        let grain_offset = (gd + gd_sectors + gt_sectors * gt_count).next_multiple_of(grain_sectors);
        let mut f = vec![0u8; (grain_offset * S) as usize];
        put(&mut f, 0, b"KDMV");
        let version: u32 = if compressed { 3 } else if zero_grain { 2 } else { 1 };
        put(&mut f, 4, &version.to_le_bytes());
        let flags = FLAG_NL_DETECT | FLAG_RGD | if compressed { FLAG_COMPRESS | FLAG_MARKER } else { 0 } | if zero_grain { FLAG_ZERO_GRAIN } else { 0 };
        put(&mut f, 8, &flags.to_le_bytes());
        put(&mut f, 12, &(capacity / S).to_le_bytes());
        put(&mut f, 20, &grain_sectors.to_le_bytes());
        put(&mut f, 28, &1u64.to_le_bytes());
        put(&mut f, 36, &20u64.to_le_bytes());
        put(&mut f, 44, &(gtes as u32).to_le_bytes());
        put(&mut f, 48, &rgd.to_le_bytes());
        put(&mut f, 56, &gd.to_le_bytes());
        put(&mut f, 64, &grain_offset.to_le_bytes());
        put(&mut f, 73, b"\n \r\n");
        put(&mut f, 77, &(compressed as u16).to_le_bytes());
        assert!(desc.len() <= 20 * 512);
        put(&mut f, 512, desc.as_bytes());
        for i in 0..gt_count {
            put(&mut f, rgd * S + i * 4, &((rgd + gd_sectors + i * gt_sectors) as u32).to_le_bytes());
            put(&mut f, gd * S + i * 4, &((gd + gd_sectors + i * gt_sectors) as u32).to_le_bytes());
        }
        SparseWriter { file: f, grain: grain_sectors * S, gtes, gd: gd * S, rgd: rgd * S, compressed }
    }

    /// Byte offsets of the GTE for `guest` in the table and in its redundant copy.
    pub fn gte(&self, guest: u64) -> (u64, u64) {
        let g = guest / self.grain;
        let (i, k) = (g / self.gtes, g % self.gtes);
        let gt = get32(&self.file, self.gd + i * 4) as u64 * S;
        let rgt = get32(&self.file, self.rgd + i * 4) as u64 * S;
        (gt + k * 4, rgt + k * 4)
    }

    pub fn set(&mut self, guest: u64, v: u32) {
        let (a, b) = self.gte(guest);
        put(&mut self.file, a, &v.to_le_bytes());
        put(&mut self.file, b, &v.to_le_bytes());
    }

    /// Store the grain holding `guest` (bytes `data`, at most a grain; the disk's last grain
    /// may be shorter). Returns where it went.
    pub fn write_grain(&mut self, guest: u64, data: &[u8]) -> u64 {
        let at = self.file.len() as u64;
        if self.compressed {
            let c = miniz_oxide::deflate::compress_to_vec_zlib(data, 6);
            let mut m = Vec::new();
            m.extend_from_slice(&(guest / self.grain * self.grain / S).to_le_bytes());
            m.extend_from_slice(&(c.len() as u32).to_le_bytes());
            m.extend_from_slice(&c);
            m.resize(m.len().next_multiple_of(512), 0);
            self.file.extend_from_slice(&m);
        } else {
            let mut g = data.to_vec();
            g.resize(self.grain as usize, 0);
            self.file.extend_from_slice(&g);
        }
        self.set(guest, (at / S) as u32);
        at
    }

    pub fn zero_grain(&mut self, guest: u64) {
        self.set(guest, 1);
    }
}

/// A stream-optimized file as VMware writes it: header with gdOffset = GD_AT_END, the
/// descriptor, compressed grains with markers, each grain table after a GT marker, the
/// directory after a GD marker, then the footer marker, the footer and end-of-stream.
pub(crate) fn vmware_stream(capacity: u64, grains: &[(u64, Vec<u8>)], desc: &str) -> (Vec<u8>, Vec<u64>) {
    let grain = 128 * S;
    let gtes = 512u64;
    let mut f = vec![0u8; 512];
    let header = |f: &mut Vec<u8>, at: usize, gd: u64| {
        put(f, at as u64, b"KDMV");
        put(f, at as u64 + 4, &3u32.to_le_bytes());
        put(f, at as u64 + 8, &(FLAG_NL_DETECT | FLAG_COMPRESS | FLAG_MARKER).to_le_bytes());
        put(f, at as u64 + 12, &(capacity / S).to_le_bytes());
        put(f, at as u64 + 20, &128u64.to_le_bytes());
        put(f, at as u64 + 28, &1u64.to_le_bytes());
        put(f, at as u64 + 36, &20u64.to_le_bytes());
        put(f, at as u64 + 44, &512u32.to_le_bytes());
        put(f, at as u64 + 56, &gd.to_le_bytes());
        put(f, at as u64 + 64, &128u64.to_le_bytes());
        put(f, at as u64 + 73, b"\n \r\n");
        put(f, at as u64 + 77, &1u16.to_le_bytes());
    };
    header(&mut f, 0, GD_AT_END);
    f.resize(21 * 512, 0);
    put(&mut f, 512, desc.as_bytes());
    f.resize(128 * 512, 0);
    let gt_count = capacity.div_ceil(grain).div_ceil(gtes);
    let mut gts = vec![vec![0u32; gtes as usize]; gt_count as usize];
    let mut at_list = Vec::new();
    for (g, data) in grains {
        let at = f.len() as u64;
        at_list.push(at);
        let c = miniz_oxide::deflate::compress_to_vec_zlib(data, 6);
        f.extend_from_slice(&(g / S).to_le_bytes());
        f.extend_from_slice(&(c.len() as u32).to_le_bytes());
        f.extend_from_slice(&c);
        f.resize(f.len().next_multiple_of(512), 0);
        let gi = g / grain;
        gts[(gi / gtes) as usize][(gi % gtes) as usize] = (at / S) as u32;
    }
    let marker = |f: &mut Vec<u8>, val: u64, ty: u32| {
        let mut m = vec![0u8; 512];
        put(&mut m, 0, &val.to_le_bytes());
        put(&mut m, 12, &ty.to_le_bytes());
        f.extend_from_slice(&m);
    };
    let mut gd = Vec::new();
    for t in &gts {
        marker(&mut f, 4, 1);
        gd.push((f.len() as u64 / S) as u32);
        for e in t {
            f.extend_from_slice(&e.to_le_bytes());
        }
    }
    marker(&mut f, 1, 2);
    let gd_at = f.len() as u64 / S;
    for e in &gd {
        f.extend_from_slice(&e.to_le_bytes());
    }
    f.resize(f.len().next_multiple_of(512), 0);
    marker(&mut f, 1, 3);
    let foot = f.len();
    f.resize(foot + 512, 0);
    header(&mut f, foot, gd_at);
    marker(&mut f, 0, 0);
    (f, at_list)
}

pub static DEMO: Demo = Demo {
    name: "vmdk",
    title: "VMDK monolithic sparse extent with zeroed grains",
    about: "The embedded text descriptor, the grain directory and its redundant copy, 64 KiB grains in write order, and grains marked zero in the grain table.",
    qemu: Some("vmdk"),
    build,
};

fn build() -> Sample {
    let capacity = 4u64 << 20;
    let d = descriptor(0x5a4d_1e00, 0xffff_ffff, "monolithicSparse", None, &[format!("RW {} SPARSE \"sample.vmdk\"", capacity / S)]);
    let mut w = SparseWriter::new(capacity, 128, false, true, &d);
    for g in [0u64, 1, 2, 16, 17, 40, 63] {
        w.write_grain(g * w.grain, &text(&format!("VMDK sample, grain {}", g), w.grain as usize));
    }
    for g in [5u64, 6, 7] {
        w.zero_grain(g * w.grain);
    }
    Sample::new([("sample.vmdk", w.file)])
}
