//! The Parallels Format Extension: one cluster at `ext_off` holding a magic, the MD5 of the
//! rest of the cluster, and a list of features ended by a zero magic. The one feature
//! defined is a dirty bitmap: its bits (one per `granularity` sectors, least significant
//! bit first) live in clusters named by an L1 table of sector offsets, where 0 means a
//! cluster of clear bits and 1 a cluster of set bits (docs/interop/parallels.txt).
use alloc::{format, string::String, vec, vec::Vec};

use super::md5;
use crate::formats::bytes::{le32, le64, uuid};
use crate::io::{read_clipped, table_buf, ReadAt};
use crate::limits;

pub const MAGIC: u64 = 0xAB23_4CEF_23DC_EA87;
pub const END_OF_FEATURES: u64 = 0;
pub const DIRTY_BITMAP: u64 = 0x2038_5FAE_252C_B34A;
/// Dirty ranges kept for display per bitmap.
const MAX_RANGES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// File offset of the feature header.
    pub offset: u64,
    pub magic: u64,
    pub flags: u64,
    pub data_size: u32,
    pub bitmap: Option<DirtyBitmap>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    /// File offset of the feature data (size, id, granularity, l1_size, L1 table).
    pub offset: u64,
    pub size_sectors: u64,
    pub id: [u8; 16],
    pub granularity_sectors: u32,
    pub l1: Vec<u64>,
    /// Granules marked dirty, and the guest byte ranges they cover (the first [`MAX_RANGES`]).
    pub dirty_granules: u64,
    pub ranges: Vec<(u64, u64)>,
    /// Whether every dirty bit could be read (false when a cluster lies past the file).
    pub complete: bool,
}

impl DirtyBitmap {
    pub fn id_text(&self) -> String {
        uuid(&self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extension {
    pub offset: u64,
    pub stored_md5: [u8; 16],
    pub computed_md5: Option<[u8; 16]>,
    pub magic: u64,
    pub features: Vec<Feature>,
    /// What is wrong, with the file offset of the bytes at fault; QEMU refuses to open the
    /// image read-only for any of these.
    pub problems: Vec<(u64, String)>,
}

impl Extension {
    pub fn checksum_ok(&self) -> bool {
        self.computed_md5 == Some(self.stored_md5)
    }
}

/// Parse the extension cluster at byte `offset`. Never fails: what cannot be read is a problem.
pub fn parse(file: &dyn ReadAt, offset: u64, cluster: u64, total_sectors: u64) -> Extension {
    let mut x = Extension { offset, ..Extension::default() };
    let size = file.size();
    if offset.checked_add(cluster).is_none_or(|e| e > size) {
        x.problems.push((offset, format!("the Format Extension cluster at {:#x} runs past the end of the file ({} bytes)", offset, size)));
        return x;
    }
    let mut buf = match table_buf("Parallels Format Extension", cluster) {
        Ok(b) => b,
        Err(e) => {
            x.problems.push((offset, format!("{}", e)));
            return x;
        }
    };
    if let Err(e) = read_clipped(file, offset, &mut buf) {
        x.problems.push((offset, format!("reading the Format Extension failed: {}", e)));
        return x;
    }
    if buf.len() < 24 {
        x.problems.push((offset, String::from("the cluster is too small for a Format Extension")));
        return x;
    }
    x.magic = le64(&buf, 0);
    x.stored_md5.copy_from_slice(&buf[8..24]);
    if x.magic != MAGIC {
        x.problems.push((offset, format!("bad Format Extension magic {:#018x} (expected {:#018x})", x.magic, MAGIC)));
        return x;
    }
    x.computed_md5 = Some(md5::digest(&buf[24..]));
    if !x.checksum_ok() {
        x.problems.push((offset + 8, String::from("the MD5 of the Format Extension does not match its contents: it is corrupted")));
    }
    let mut pos = 24usize;
    loop {
        let at = offset + pos as u64;
        if buf.len() - pos < 24 {
            x.problems.push((at, String::from("the feature list runs past the cluster without an end-of-features marker")));
            break;
        }
        let (magic, flags, data_size) = (le64(&buf, pos), le64(&buf, pos + 8), le32(&buf, pos + 16));
        pos += 24;
        let padded = (data_size as usize).next_multiple_of(8);
        if padded > buf.len() - pos {
            x.problems.push((at + 16, format!("feature data of {} bytes runs past the cluster", data_size)));
            break;
        }
        let mut feat = Feature { offset: at, magic, flags, data_size, bitmap: None };
        if flags != 0 {
            x.problems.push((at + 8, format!("feature flags {:#x} are set; QEMU supports none", flags)));
        }
        match magic {
            END_OF_FEATURES => {
                x.features.push(feat);
                break;
            }
            DIRTY_BITMAP => match bitmap(file, &buf[pos..pos + data_size as usize], at + 24, cluster, total_sectors) {
                Ok(b) => feat.bitmap = Some(b),
                Err(p) => x.problems.push(p),
            },
            m => x.problems.push((at, format!("unknown feature {:#018x}", m))),
        }
        x.features.push(feat);
        pos += padded;
    }
    x
}

fn bitmap(file: &dyn ReadAt, data: &[u8], at: u64, cluster: u64, total_sectors: u64) -> Result<DirtyBitmap, (u64, String)> {
    if data.len() < 32 {
        return Err((at, format!("a dirty bitmap feature of {} bytes is smaller than its 32-byte header", data.len())));
    }
    let size_sectors = le64(data, 0);
    let mut id = [0u8; 16];
    id.copy_from_slice(&data[8..24]);
    let granularity_sectors = le32(data, 24);
    let l1_size = le32(data, 28) as usize;
    if size_sectors != total_sectors {
        return Err((at, format!("the bitmap covers {} sectors, the disk has {}", size_sectors, total_sectors)));
    }
    let gran = granularity_sectors as u64 * 512;
    if !gran.is_power_of_two() || gran > u32::MAX as u64 {
        return Err((at + 24, format!("bitmap granularity {} sectors is not a power of two below 4 GiB", granularity_sectors)));
    }
    if l1_size.saturating_mul(8) > data.len() - 32 {
        return Err((at + 28, format!("the L1 table of {} entries runs past the feature data", l1_size)));
    }
    let granules = total_sectors.saturating_mul(512).div_ceil(gran);
    let bits_per_cluster = cluster * 8;
    if l1_size as u64 != granules.div_ceil(bits_per_cluster) {
        return Err((at + 28, format!("an L1 table of {} entries does not match a bitmap of {} bits in {}-byte clusters", l1_size, granules, cluster)));
    }
    let l1: Vec<u64> = (0..l1_size).map(|i| le64(data, 32 + 8 * i)).collect();
    let mut b = DirtyBitmap { offset: at, size_sectors, id, granularity_sectors, l1, dirty_granules: 0, ranges: Vec::new(), complete: true };
    // Read the bitmap clusters (bounded), in one coalesced prefetch.
    let mut ranges: Vec<(u64, u64)> = b.l1.iter().filter(|&&e| e > 1).map(|&e| (e.saturating_mul(512), cluster)).collect();
    file.prefetch(&mut ranges);
    let mut buf = vec![0u8; cluster.min(limits::MAX_TABLE_BYTES) as usize];
    let mut read = 0u64;
    let mut run: Option<u64> = None;
    let disk = total_sectors.saturating_mul(512);
    let close = |b: &mut DirtyBitmap, from: u64, to: u64| {
        if b.ranges.len() < MAX_RANGES {
            b.ranges.push((from * gran, (to * gran).min(disk)));
        }
    };
    let l1 = b.l1.clone();
    for (i, &e) in l1.iter().enumerate() {
        let first = i as u64 * bits_per_cluster;
        let last = granules.min(first + bits_per_cluster);
        if first >= last {
            break;
        }
        // One step per run of equal bits: whole clusters for entries 0 and 1, whole bytes
        // of 0x00 or 0xff, single bits otherwise.
        let mut step = |b: &mut DirtyBitmap, g: u64, n: u64, set: bool| {
            match (set, run) {
                (true, None) => run = Some(g),
                (false, Some(s)) => {
                    close(b, s, g);
                    run = None;
                }
                _ => {}
            }
            if set {
                b.dirty_granules += n;
            }
        };
        if e <= 1 {
            step(&mut b, first, last - first, e == 1);
            continue;
        }
        let host = e.saturating_mul(512);
        read += cluster;
        if cluster > buf.len() as u64
            || read > limits::MAX_TABLE_BYTES
            || host.checked_add(cluster).is_none_or(|end| end > file.size())
            || read_clipped(file, host, &mut buf).is_err()
        {
            b.complete = false;
            step(&mut b, first, 0, false);
            continue;
        }
        let mut g = first;
        while g < last {
            let byte = buf[((g - first) / 8) as usize];
            if (g - first).is_multiple_of(8) && g + 8 <= last && (byte == 0 || byte == 0xff) {
                step(&mut b, g, 8, byte == 0xff);
                g += 8;
            } else {
                step(&mut b, g, 1, byte >> ((g - first) % 8) & 1 == 1);
                g += 1;
            }
        }
    }
    if let Some(s) = run {
        close(&mut b, s, granules);
    }
    Ok(b)
}
