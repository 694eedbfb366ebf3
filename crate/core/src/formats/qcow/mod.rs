//! qcow version 1, QEMU's original copy-on-write format: a 48-byte big-endian header, an
//! L1 table right after it, L2 tables of `1 << l2_bits` entries, data clusters, and
//! clusters compressed with raw deflate. No refcounts, no snapshots, no zero clusters.
//! There is no spec document; the layout is the one QEMU's block/qcow.c reads and writes
//! (QEMU's probe: magic "QFI\xfb", version 1), and validity rules are the ones it applies
//! when it opens an image.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};
use core::cell::{Cell, RefCell};

use crate::formats::tables;
use crate::codec::{self, Codec};
use crate::error::{Error, Result};
use crate::formats::bytes::{be32, be64};
use crate::formats::fmt::{field, quoted, size, unix_time};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_clipped, read_exact_at, ReadAt};
use crate::limits;
use crate::model::*;

#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
pub(crate) mod tests;

pub const MAGIC: [u8; 4] = *b"QFI\xfb";
pub const HEADER_BYTES: u64 = 48;
const OFLAG_COMPRESSED: u64 = 1 << 63;
/// Guest bytes of compressed clusters whose data is prefetched in one go.
const COMPRESSED_AHEAD: u64 = 16 << 20;

pub static DRIVER: Driver = Driver { name: "qcow", probe, open };

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    head.len() >= 8 && head.starts_with(&MAGIC) && be32(head, 4) == 1
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "qcow", offset, message }
}

pub(crate) struct Qcow {
    file: Arc<dyn ReadAt>,
    name: String,
    head: [u8; 48],
    info: ImageInfo,
    cluster_bits: u32,
    cluster: u64,
    /// Entries per L2 table.
    l2_entries: u64,
    l1_offset: u64,
    /// The L1 entries covering the disk.
    l1: Vec<u64>,
    l1_in_file: u64,
    crypt: u32,
    file_size: u64,
    decoded: RefCell<Option<(u64, Vec<u8>)>>,
    ahead: Cell<(u64, u64)>,
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Qcow::open(file, ctx.name)?))
}

impl Qcow {
    fn open(file: Arc<dyn ReadAt>, name: &str) -> Result<Qcow> {
        let mut head = [0u8; 48];
        read_exact_at(&*file, 0, &mut head, "qcow header")?;
        if head[0..4] != MAGIC {
            return Err(invalid(0, String::from("bad magic: not a qcow image")));
        }
        if be32(&head, 4) != 1 {
            return Err(Error::Unsupported { format: "qcow", offset: 4, message: format!("version {}: a qcow (version 1) reader reads version 1 only", be32(&head, 4)) });
        }
        let size_field = be64(&head, 24);
        let (cluster_bits, l2_bits) = (head[32] as u32, head[33] as u32);
        if size_field <= 1 {
            return Err(invalid(24, format!("size {} is too small (QEMU requires at least 2 bytes)", size_field)));
        }
        if !(9..=16).contains(&cluster_bits) {
            return Err(invalid(32, format!("cluster_bits {} is outside 9 to 16 (512 bytes to 64 KiB)", cluster_bits)));
        }
        if !(6..=13).contains(&l2_bits) {
            return Err(invalid(33, format!("l2_bits {} is outside 6 to 13 (L2 tables of 512 bytes to 64 KiB)", l2_bits)));
        }
        let crypt = be32(&head, 36);
        if crypt > 1 {
            return Err(Error::Unsupported { format: "qcow", offset: 36, message: format!("unknown encryption method {}", crypt) });
        }
        // QEMU sizes the disk in whole sectors.
        let virtual_size = size_field / 512 * 512;
        if virtual_size > limits::MAX_VIRTUAL_SIZE {
            return Err(Error::Limit { what: "qcow virtual size", needed: virtual_size, limit: limits::MAX_VIRTUAL_SIZE });
        }
        let shift = cluster_bits + l2_bits;
        let l1_size = size_field.div_ceil(1u64 << shift);
        if l1_size > (i32::MAX as u64) / 8 {
            return Err(invalid(24, String::from("the image is too big for its L1 table")));
        }
        let l1_offset = be64(&head, 40);
        let mut raw = crate::io::table_buf("L1 table", l1_size * 8)?;
        read_clipped(&*file, l1_offset, &mut raw)?;
        let file_size = file.size();
        let backing_offset = be64(&head, 8);
        let backing = if backing_offset != 0 {
            let len = be32(&head, 16) as u64;
            if len > 1023 {
                return Err(invalid(16, format!("backing_file_size {} is longer than the 1023 bytes QEMU allows", len)));
            }
            let mut raw = vec![0u8; len as usize];
            read_exact_at(&*file, backing_offset, &mut raw, "backing file name")?;
            let name = String::from_utf8_lossy(&raw).into_owned();
            (!name.is_empty()).then_some(BackingRef { name, format: None, offset: backing_offset })
        } else {
            None
        };
        let cluster = 1u64 << cluster_bits;
        Ok(Qcow {
            name: String::from(name),
            head,
            info: ImageInfo {
                format: "qcow",
                variant: String::from("qcow version 1"),
                layout: LayoutStatus::Confirmed,
                virtual_size,
                cluster_size: cluster,
                backing,
                dirty: false,
                companions: Vec::new(),
            },
            cluster_bits,
            cluster,
            l2_entries: 1u64 << l2_bits,
            l1_offset,
            l1: raw.chunks_exact(8).map(|c| be64(c, 0)).collect(),
            l1_in_file: file_size.saturating_sub(l1_offset) / 8,
            crypt,
            file_size,
            decoded: RefCell::new(None),
            ahead: Cell::new((0, 0)),
            file,
        })
    }

    fn l2_bytes(&self) -> u64 {
        self.l2_entries * 8
    }

    fn l2_cover(&self) -> u64 {
        self.l2_entries * self.cluster
    }

    /// The L2 table of L1 index `i`: Ok(None) unallocated, Err(entry offset) if unusable.
    fn l2_table(&self, i: u64) -> core::result::Result<Option<u64>, u64> {
        let at = self.l1_offset.saturating_add(i * 8);
        let e = self.l1.get(i as usize).copied().unwrap_or(0);
        if i >= self.l1_in_file {
            return Err(at);
        }
        if e == 0 {
            return Ok(None);
        }
        if e.checked_add(self.l2_bytes()).is_none_or(|end| end > self.file_size) {
            return Err(at);
        }
        Ok(Some(e))
    }

    /// A compressed entry's data: (offset, bytes).
    fn compressed_range(&self, e: u64) -> (u64, u64) {
        let shift = 63 - self.cluster_bits;
        (e & ((1u64 << shift) - 1), (e >> shift) & (self.cluster - 1))
    }

    fn kind(&self, e: u64, entry: u64, within: u64) -> Kind {
        if e == 0 {
            return Kind::Unallocated;
        }
        if e & OFLAG_COMPRESSED != 0 {
            let (off, len) = self.compressed_range(e);
            if off >= self.file_size || len == 0 || off < HEADER_BYTES {
                return Kind::Invalid { entry };
            }
            return Kind::Compressed { file: 0, offset: off };
        }
        if e >= self.file_size || e < HEADER_BYTES {
            return Kind::Invalid { entry };
        }
        Kind::Data { file: 0, offset: e + within }
    }

    fn read_l2(&self, l2: u64, first: u64, count: u64) -> Result<Vec<u64>> {
        let mut buf = crate::io::table_buf("L2 table", count * 8)?;
        read_exact_at(&*self.file, l2 + first * 8, &mut buf, "L2 table")?;
        Ok(buf.chunks_exact(8).map(|c| be64(c, 0)).collect())
    }

    fn prefetch_l2(&self, start: u64, end: u64) -> u64 {
        // Small requests take 64 KiB of the table ahead for the next ones.
        let shape = tables::Shape { cover: self.l2_cover(), unit: self.cluster, entry: 8, table: self.l2_bytes(), ahead: 64 << 10 };
        tables::prefetch(&*self.file, &shape, start, end, |i| self.l2_table(i).ok().flatten())
    }

    fn refuse_encrypted(&self) -> Result<()> {
        if self.crypt == 0 {
            return Ok(());
        }
        Err(Error::Unsupported {
            format: "qcow",
            offset: 36,
            message: String::from("the guest data is encrypted (AES-CBC); diskscope shows the header and the tables but cannot decrypt, so it does not map, read or convert the data"),
        })
    }

    fn finding(&self, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: String) -> Finding {
        Finding { severity, code, file: self.name.clone(), offset: Some(offset), length, guest, message }
    }
}

impl Image for Qcow {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let b = &self.head[..];
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| field(b, name, off, len, value, note);
        let mut v = vec![
            f("magic", 0, 4, String::from("\"QFI\\xfb\""), "identifies a qcow image"),
            f("version", 4, 4, format!("{}", be32(b, 4)), "qcow version 1"),
            f("backing_file_offset", 8, 8, format!("{}", be64(b, 8)), "where the backing file name is stored; 0: no backing file"),
            f("backing_file_size", 16, 4, format!("{} bytes", be32(b, 16)), "length of the backing file name"),
            f("mtime", 20, 4, if be32(b, 20) == 0 { String::from("0") } else { unix_time(be32(b, 20) as i64) }, "modification time of the backing file (QEMU writes 0)"),
            f("size", 24, 8, size(be64(b, 24)), "virtual disk size (QEMU uses whole 512-byte sectors of it)"),
            f("cluster_bits", 32, 1, format!("{} ({})", b[32], size(self.cluster)), "cluster size = 1 << cluster_bits; 9 to 16"),
            f("l2_bits", 33, 1, format!("{} ({} entries)", b[33], self.l2_entries), "entries per L2 table = 1 << l2_bits"),
            f("padding", 34, 2, format!("{:#x}", u16::from_be_bytes([b[34], b[35]])), "unused"),
            f("crypt_method", 36, 4, String::from(match self.crypt {
                0 => "0 (none)",
                _ => "1 (AES-CBC)",
            }), "encryption of guest data"),
            f("l1_table_offset", 40, 8, format!("{:#x}", self.l1_offset), "the L1 table (follows the header)"),
        ];
        if let Some(bk) = &self.info.backing {
            v.push(Field {
                name: String::from("backing file name"),
                offset: bk.offset,
                size: bk.name.len() as u64,
                raw: bk.name.as_bytes().to_vec(),
                value: quoted(&bk.name),
                note: String::from("backing file; qcow names no format for it, so it is probed"),
            });
        }
        v
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let mut r = vec![
            Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: HEADER_BYTES },
            Region { name: String::from("L1 table"), kind: RegionKind::Table, offset: self.l1_offset, length: self.l1.len() as u64 * 8 },
        ];
        for i in 0..self.l1.len() as u64 {
            if let Ok(Some(l2)) = self.l2_table(i) {
                r.push(Region { name: format!("L2 table {}", i), kind: RegionKind::Table, offset: l2, length: self.l2_bytes() });
            }
        }
        Ok(r)
    }

    fn run_granule(&self) -> u64 {
        self.info.cluster_size
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        self.refuse_encrypted()?;
        let end = start + len;
        let cover = self.l2_cover();
        let mut pos = start;
        let mut prefetched = start;
        while pos < end {
            let i = pos / cover;
            let base = i * cover;
            let span_end = end.min(base + cover);
            if pos >= prefetched {
                prefetched = self.prefetch_l2(pos, end);
            }
            match self.l2_table(i) {
                Ok(None) => Extent::push(out, Extent { start: pos, length: span_end - pos, kind: Kind::Unallocated }),
                Err(at) => Extent::push(out, Extent { start: pos, length: span_end - pos, kind: Kind::Invalid { entry: at } }),
                Ok(Some(l2)) => {
                    let first = (pos - base) / self.cluster;
                    let last = (span_end - base).div_ceil(self.cluster);
                    let table = self.read_l2(l2, first, last - first)?;
                    for (k, &e) in table.iter().enumerate() {
                        let cs = base + (first + k as u64) * self.cluster;
                        let (a, b) = (cs.max(pos), (cs + self.cluster).min(span_end));
                        Extent::push(out, Extent { start: a, length: b - a, kind: self.kind(e, l2 + (first + k as u64) * 8, a - cs) });
                    }
                }
            }
            pos = span_end;
        }
        Ok(())
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        (index == 0).then_some(&self.file)
    }

    fn read_computed(&self, _extent: &Extent, guest: u64, buf: &mut [u8]) -> Result<()> {
        self.refuse_encrypted()?;
        let cover = self.l2_cover();
        let mut done = 0usize;
        while done < buf.len() {
            let g = guest + done as u64;
            let cs = g / self.cluster * self.cluster;
            let n = (buf.len() - done).min((cs + self.cluster - g) as usize);
            let i = cs / cover;
            let l2 = match self.l2_table(i) {
                Ok(Some(l2)) => l2,
                Ok(None) => return Err(invalid(self.l1_offset.saturating_add(i * 8), format!("guest offset {:#x} is not compressed", g))),
                Err(at) => return Err(Error::CorruptMapping { guest: g, file: self.name.clone(), offset: at }),
            };
            let k = cs % cover / self.cluster;
            let at = l2 + k * 8;
            let e = self.read_l2(l2, k, 1)?[0];
            if !matches!(self.kind(e, at, 0), Kind::Compressed { .. }) {
                return Err(invalid(at, format!("guest offset {:#x} is not mapped by a valid compressed cluster entry", g)));
            }
            // Prefetch the compressed data of the clusters ahead, in a few coalesced reads.
            let (a, b) = self.ahead.get();
            if cs < a || cs >= b {
                let end = (cs + COMPRESSED_AHEAD).min(self.info.virtual_size.next_multiple_of(self.cluster));
                self.ahead.set((cs, end));
                self.prefetch_l2(cs, end);
                let mut ranges: Vec<(u64, u64)> = Vec::new();
                let mut g = cs;
                while g < end {
                    let table_end = end.min((g / cover + 1) * cover);
                    if let Ok(Some(t)) = self.l2_table(g / cover) {
                        if let Ok(entries) = self.read_l2(t, g % cover / self.cluster, (table_end - g).div_ceil(self.cluster)) {
                            ranges.extend(entries.iter().filter(|&&e| e & OFLAG_COMPRESSED != 0).map(|&e| self.compressed_range(e)));
                        }
                    }
                    g = table_end;
                }
                for r in ranges.iter_mut() {
                    r.1 = r.1.min(self.file_size.saturating_sub(r.0));
                }
                self.file.prefetch(&mut ranges);
            }
            if !matches!(&*self.decoded.borrow(), Some((key, _)) if *key == e) {
                let (off, len) = self.compressed_range(e);
                let mut input = vec![0u8; len as usize];
                read_clipped(&*self.file, off, &mut input)?;
                let mut out = vec![0u8; self.cluster as usize];
                codec::decode(Codec::Deflate, &input, &mut out).map_err(|m| invalid(at, format!(
                    "the compressed cluster for guest offset {:#x} (deflate data at {:#x}, {} bytes; L2 entry at byte {}) cannot be decoded: {}", cs, off, len, at, m)))?;
                *self.decoded.borrow_mut() = Some((e, out));
            }
            let within = (g - cs) as usize;
            buf[done..done + n].copy_from_slice(&self.decoded.borrow().as_ref().expect("just decoded").1[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// qemu-img has no check for qcow; this one looks at what can go wrong without
    /// refcounts: entries outside the file, clusters used twice, clusters nothing uses.
    fn check(&self) -> Result<CheckResult> {
        let mut r = CheckResult::default();
        let cluster = self.cluster;
        r.total_clusters = self.info.virtual_size.div_ceil(cluster);
        let n = self.file_size.div_ceil(cluster);
        if n / 8 > limits::MAX_TABLE_BYTES {
            return Err(Error::Limit { what: "host clusters to account for", needed: n, limit: limits::MAX_TABLE_BYTES * 8 });
        }
        // Whole clusters that must be used once (tables, data); compressed data may share.
        let mut used = vec![0u8; n as usize];
        const ONCE: u8 = 1;
        const SHARED: u8 = 2;
        let mark = |used: &mut Vec<u8>, off: u64, len: u64, how: u8| -> bool {
            let mut fresh = true;
            for c in off / cluster..off.saturating_add(len).div_ceil(cluster).min(n) {
                let u = &mut used[c as usize];
                fresh &= *u == 0 || (*u == SHARED && how == SHARED);
                *u = (*u).max(how);
            }
            fresh
        };
        let l1_end = self.l1_offset.max(HEADER_BYTES).saturating_add(self.l1.len() as u64 * 8);
        mark(&mut used, 0, l1_end, SHARED);
        if let Some(b) = &self.info.backing {
            mark(&mut used, b.offset, b.name.len() as u64, SHARED);
        }
        let cover = self.l2_cover();
        let mut ranges: Vec<(u64, u64)> = (0..self.l1.len() as u64).filter_map(|i| self.l2_table(i).ok().flatten()).map(|o| (o, self.l2_bytes())).collect();
        self.file.prefetch(&mut ranges);
        for i in 0..self.l1.len() as u64 {
            let at = self.l1_offset.saturating_add(i * 8);
            let guest = i * cover;
            let l2 = match self.l2_table(i) {
                Ok(None) => continue,
                Ok(Some(l2)) => l2,
                Err(_) => {
                    r.add_with(Severity::Corruption, 1, || self.finding(Severity::Corruption, "l1-entry-invalid", at, 8, Some(guest), format!(
                        "L1 entry {} ({:#x}) points outside the file, or lies outside it", i, self.l1.get(i as usize).copied().unwrap_or(0))));
                    continue;
                }
            };
            if !mark(&mut used, l2, self.l2_bytes(), ONCE) {
                r.add_with(Severity::Corruption, 1, || self.finding(Severity::Corruption, "l2-table-shared", at, 8, Some(guest), format!(
                    "the L2 table at {:#x} overlaps another table or data", l2)));
                continue;
            }
            let table = self.read_l2(l2, 0, self.l2_entries)?;
            for (k, &e) in table.iter().enumerate() {
                let g = guest + k as u64 * cluster;
                if e == 0 || g >= self.info.virtual_size.next_multiple_of(cluster) {
                    continue;
                }
                let eat = l2 + k as u64 * 8;
                r.allocated_clusters += 1;
                match self.kind(e, eat, 0) {
                    Kind::Invalid { .. } => r.add_with(Severity::Corruption, 1, || self.finding(Severity::Corruption, "l2-entry-invalid", eat, 8, Some(g), format!(
                        "L2 entry {:#x} points outside the file", e))),
                    Kind::Compressed { .. } => {
                        r.compressed_clusters += 1;
                        let (off, len) = self.compressed_range(e);
                        if !mark(&mut used, off, len, SHARED) {
                            r.add_with(Severity::Corruption, 1, || self.finding(Severity::Corruption, "cluster-shared", eat, 8, Some(g), format!(
                                "the compressed data at {:#x} overlaps a table or a data cluster", off)));
                        }
                    }
                    _ => {
                        if e % cluster != 0 {
                            r.add_with(Severity::Warning, 1, || self.finding(Severity::Warning, "l2-entry-unaligned", eat, 8, Some(g), format!(
                                "the data cluster at {:#x} is not cluster-aligned (QEMU never writes this)", e)));
                        }
                        if !mark(&mut used, e, cluster, ONCE) {
                            r.add_with(Severity::Corruption, 1, || self.finding(Severity::Corruption, "cluster-shared", eat, 8, Some(g), format!(
                                "the data cluster at {:#x} is used more than once", e)));
                        }
                    }
                }
            }
        }
        // QEMU writes the L1 table in whole sectors: its zero tail may reach into the next
        // (small) cluster, which is then no leak.
        let tail = self.l1_offset.saturating_add((self.l1.len() as u64 * 8).next_multiple_of(512));
        for c in l1_end / cluster..tail.div_ceil(cluster).min(n) {
            if used[c as usize] == 0 {
                used[c as usize] = SHARED;
            }
        }
        let mut c = 0;
        while c < n {
            if used[c as usize] != 0 {
                c += 1;
                continue;
            }
            let s = c;
            while c < n && used[c as usize] == 0 {
                c += 1;
            }
            r.leaks += c - s;
            r.add_with(Severity::Leak, 1, || self.finding(Severity::Leak, "leaked-clusters", s * cluster, (c - s) * cluster, None, format!(
                "{} cluster{} at {:#x} {} not used by any table", c - s, if c - s == 1 { "" } else { "s" }, s * cluster, if c - s == 1 { "is" } else { "are" })));
        }
        if r.compressed_clusters > 0 {
            r.add(self.finding(Severity::Info, "compressed-clusters", self.l1_offset, 0, None, format!(
                "{} clusters are compressed (raw deflate): reads decompress them", r.compressed_clusters)));
        }
        if self.crypt != 0 {
            r.add(self.finding(Severity::Warning, "encrypted", 36, 4, None, String::from(
                "the guest data is encrypted with qcow's legacy AES-CBC: readable only with the key (qemu-img convert with the secret); diskscope does not map or convert it")));
        }
        r.add(self.finding(Severity::Info, "qcow-v1", 4, 4, None, String::from(
            "qcow version 1 is obsolete: QEMU reads it, but most other tools do not; convert to qcow2 or raw to move it")));
        Ok(r)
    }
}
