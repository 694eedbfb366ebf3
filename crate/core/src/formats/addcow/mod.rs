//! add-cow: a copy-on-write bitmap in its own file, beside an image file that holds the
//! written clusters at their own offsets (seed 001 v11: "ADD_COW\xff"; V18-V20: "ACOW").
//! A 1 bit reads the image file, a 0 bit the backing file (zeros past its end, or without
//! one). The disk is as large as the image file, which may itself be in any format.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};

use super::bitmap::CowBitmap;
use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_exact_at, ReadAt};
use crate::limits;
use crate::model::*;

mod header;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
mod tests;
use header::*;

pub static DRIVER: Driver = Driver {
    name: "add-cow",
    probe: |h, _| h.starts_with(MAGIC_V11) || h.starts_with(MAGIC_ACOW),
    open,
};

/// Where the clusters with a 1 bit are read from.
enum ImageFile {
    /// A raw file: guest offset X is file offset X.
    Raw(Arc<dyn ReadAt>),
    /// An image in its own format, read through its own chain.
    Nested(Chain),
    /// Not given, or not readable (the reason).
    Absent(Option<String>),
}

struct AddCow {
    file: Arc<dyn ReadAt>,
    name: String,
    h: Header,
    backing_name: Option<String>,
    image_name: String,
    /// Problems with the names, reported by check (offset of the field, message).
    name_problems: Vec<(u64, String)>,
    image: ImageFile,
    info: ImageInfo,
    bitmap: CowBitmap,
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "add-cow", offset, message }
}

/// Read a name the header points at, checking it lies inside the header's name area.
fn read_name(file: &dyn ReadAt, h: &Header, n: &NameRef, what: &str) -> Result<Option<String>> {
    if n.offset == 0 && n.size == 0 {
        return Ok(None);
    }
    let end = n.offset.checked_add(n.size).unwrap_or(u64::MAX);
    if n.offset < h.names_start || end > h.header_size {
        return Err(invalid(n.field_at, format!(
            "the {} name ({} bytes at {}) lies outside the header's name area [{}, {})", what, n.size, n.offset, h.names_start, h.header_size)));
    }
    if n.size == 0 || n.size >= limits::MAX_NAME_BYTES {
        return Err(invalid(n.field_at + 4, format!("the {} name is {} bytes long", what, n.size)));
    }
    let mut raw = vec![0u8; n.size as usize];
    read_exact_at(file, n.offset, &mut raw, "add-cow file name")?;
    Ok(Some(String::from_utf8_lossy(&raw).into_owned()))
}

/// A name that could not be read, as a finding's (offset, message).
fn name_problem(e: Error) -> (u64, String) {
    match e {
        Error::Invalid { offset, message, .. } => (offset, message),
        Error::PastEnd { offset, .. } => (offset, format!("{}", e)),
        e => (0, format!("{}", e)),
    }
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    let mut fixed = [0u8; FIXED_V11];
    let n = file.size().min(FIXED_V11 as u64) as usize;
    file.read_at(0, &mut fixed[..n])?;
    let h = Header::decode(&fixed[..n]).ok_or(Error::PastEnd { what: "add-cow header", offset: 0, len: FIXED_V11 as u64, file_size: file.size() })?;
    let (feat_at, gen) = match h.generation {
        Generation::V11 => (28, "v11"),
        Generation::Acow => (24, "ACOW"),
    };
    if h.generation == Generation::V11 && fixed[8..12] != 1u32.to_le_bytes() {
        return Err(Error::Unsupported { format: "add-cow", offset: 8, message: String::from("version is not 1, the only version v11 defines") });
    }
    if h.unknown_features != 0 {
        return Err(Error::Unsupported {
            format: "add-cow",
            offset: feat_at,
            message: format!("unknown feature bits {:#x} are set; an {} reader must refuse them", h.unknown_features, gen),
        });
    }
    if h.cluster == 0 {
        return Err(invalid(20, String::from("cluster_bits is outside 9 to 21")));
    }
    if h.header_size < h.names_start || h.header_size > u32::MAX as u64 * 4096 {
        return Err(invalid(if h.generation == Generation::V11 { 44 } else { 40 }, format!("the header size {} cannot hold the header", h.header_size)));
    }
    let mut name_problems = Vec::new();
    let backing_name = read_name(&*file, &h, &h.backing, "backing file").unwrap_or_else(|e| {
        name_problems.push(name_problem(e));
        None
    });
    let image_name = match read_name(&*file, &h, &h.image, "image file")? {
        Some(n) => n,
        None => return Err(invalid(h.image.field_at, String::from("the header names no image file, and add-cow keeps its data there"))),
    };
    if backing_name.is_some() && backing_name.as_deref() == Some(image_name.as_str()) {
        name_problems.push((h.backing.offset, format!("the backing file and the image file are both '{}'", image_name)));
    }
    let image_fmt = if h.image_fmt.is_empty() { "raw" } else { h.image_fmt.as_str() };
    let found = ctx.resolver.resolve(&image_name, ctx.name);
    let companion = Companion { role: "image file", name: image_name.clone(), offset: h.image.offset, found: found.as_ref().map(|(k, _)| k.clone()) };
    let image = match found {
        None => ImageFile::Absent(None),
        Some((key, f)) => match Chain::open(&key, f, Some(image_fmt), ctx.resolver) {
            Ok(c) if c.layers.len() == 1 && c.top().info().format == "raw" => ImageFile::Raw(c.top().file(0).expect("raw has its file").clone()),
            Ok(c) => ImageFile::Nested(c),
            Err(e) => ImageFile::Absent(Some(format!("{}", e))),
        },
    };
    let virtual_size = match &image {
        ImageFile::Raw(f) => f.size(),
        ImageFile::Nested(c) => c.virtual_size(),
        // Unknown without the image file: show what the bitmap can describe.
        ImageFile::Absent(_) => file.size().saturating_sub(h.header_size).saturating_mul(8).saturating_mul(h.cluster).min(limits::MAX_VIRTUAL_SIZE),
    };
    let bitmap = CowBitmap { offset: h.header_size, bits: virtual_size.div_ceil(h.cluster), granule: h.cluster };
    let info = ImageInfo {
        format: "add-cow",
        variant: String::from(match h.generation {
            Generation::V11 => "add-cow v11 (\"ADD_COW\\xff\", version 1; seed 001's spec, gaps decided in DECISIONS.md)",
            Generation::Acow => "add-cow V18-V20 (\"ACOW\"; from the author's published driver)",
        }),
        layout: match h.generation {
            Generation::V11 => LayoutStatus::Reconstructed,
            Generation::Acow => LayoutStatus::Confirmed,
        },
        virtual_size,
        cluster_size: h.cluster,
        // With ALL_ALLOCATED the backing file is never read, so the chain need not find it.
        backing: backing_name.clone().filter(|_| !h.all_allocated).map(|name| BackingRef {
            name,
            format: (!h.backing_fmt.is_empty()).then(|| h.backing_fmt.clone()),
            offset: h.backing.offset,
        }),
        dirty: false,
        companions: vec![companion],
    };
    Ok(Box::new(AddCow { file, name: String::from(ctx.name), h, backing_name, image_name, name_problems, image, info, bitmap }))
}

impl AddCow {
    fn image_kind(&self, at: u64) -> Kind {
        match &self.image {
            ImageFile::Raw(_) => Kind::Data { file: 1, offset: at },
            ImageFile::Nested(_) => Kind::Computed { file: 1 },
            ImageFile::Absent(_) => Kind::Missing { file: 1 },
        }
    }

    fn finding(&self, severity: Severity, code: &'static str, offset: u64, length: u64, message: String) -> Finding {
        Finding { severity, code, file: self.name.clone(), offset: Some(offset), length, guest: None, message }
    }
}

impl Image for AddCow {
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        let f = self.bitmap.field(&*self.file, guest, "the cluster is read from the image file", "the cluster is read from the backing file (zeros without one)")?;
        Ok(f.into_iter().collect())
    }

    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        self.h.fields(&self.backing_name, &Some(self.image_name.clone()))
    }

    fn regions(&self) -> Result<Vec<Region>> {
        Ok(vec![
            Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: self.h.header_size },
            Region { name: String::from("bitmap"), kind: RegionKind::Bitmap, offset: self.bitmap.offset, length: self.bitmap.bytes() },
        ])
    }

    fn run_granule(&self) -> u64 {
        self.h.cluster
    }

    /// The bitmap's runs, as cow counts them: a disk of exabytes whose bitmap the file
    /// holds a few KiB of walks in one step, not in steps of half a million clusters.
    fn runs_end(&self, pos: u64, runs: u64) -> u64 {
        if self.h.all_allocated {
            return u64::MAX; // one run: the image file's
        }
        self.bitmap.runs_end(&*self.file, pos, runs)
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        if self.h.all_allocated {
            Extent::push(out, Extent { start, length: len, kind: self.image_kind(start) });
            return Ok(());
        }
        self.bitmap.runs(&*self.file, start, start + len, |a, b, set| {
            let kind = if set { self.image_kind(a) } else { Kind::Unallocated };
            Extent::push(out, Extent { start: a, length: b - a, kind });
        })
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        match (index, &self.image) {
            (0, _) => Some(&self.file),
            (1, ImageFile::Raw(f)) => Some(f),
            _ => None,
        }
    }

    fn read_computed(&self, extent: &Extent, guest: u64, buf: &mut [u8]) -> Result<()> {
        match &self.image {
            ImageFile::Nested(c) => c.read(guest, buf),
            _ => Err(Error::MissingFile { name: self.image_name.clone(), by: self.name.clone(), offset: extent.start }),
        }
    }

    fn check(&self) -> Result<CheckResult> {
        let mut r = CheckResult::default();
        let h = &self.h;
        r.total_clusters = self.bitmap.bits;
        for (at, m) in &self.name_problems {
            r.add(self.finding(Severity::Corruption, "name-invalid", *at, 8, m.clone()));
        }
        match h.generation {
            Generation::V11 => {
                let feat = u64::from_le_bytes(h.bytes[28..36].try_into().expect("8 bytes"));
                if feat & V11_IMAGE_FILE == 0 {
                    r.add(self.finding(Severity::Warning, "feature-flags", 28, 8, String::from("IMAGE_FILE is not set, but add-cow always uses an image file")));
                }
                if (feat & V11_BACKING_FILE != 0) != self.backing_name.is_some() {
                    r.add(self.finding(Severity::Warning, "feature-flags", 28, 8, String::from("BACKING_FILE does not agree with whether a backing file name is stored")));
                }
            }
            Generation::Acow => {
                let want = h.cluster.max(4096);
                if h.header_size != want {
                    r.add(self.finding(Severity::Warning, "header-size", 40, 4, format!(
                        "header_size is {}, the driver requires max(cluster size, 4096) = {} and would refuse this image", h.header_size, want)));
                }
                let backing_empty = [h.backing.offset == 0, h.backing.size == 0, h.backing_fmt.is_empty()];
                if backing_empty.iter().any(|&e| e != backing_empty[0]) {
                    r.add(self.finding(Severity::Warning, "backing-fields", 4, 8, String::from(
                        "backing_offset, backing_size and backing_fmt disagree on whether there is a backing file")));
                }
                for (at, what) in [(44u64, "backing_fmt"), (60, "image_fmt")] {
                    if !h.bytes[at as usize..at as usize + 16].contains(&0) {
                        r.add(self.finding(Severity::Warning, "format-unterminated", at, 16, format!("{} has no NUL within its 16 bytes", what)));
                    }
                }
            }
        }
        // Names must not overlap, and nothing else in the name area may be set.
        let names: Vec<(u64, u64)> = [&h.backing, &h.image].iter().filter(|n| n.size > 0).map(|n| (n.offset, n.offset + n.size)).collect();
        if names.len() == 2 && names[0].0 < names[1].1 && names[1].0 < names[0].1 {
            r.add(self.finding(Severity::Corruption, "names-overlap", h.image.offset, h.image.size, String::from("the backing file name and the image file name overlap")));
        }
        let area_end = h.header_size.min(self.file.size()).min(h.names_start + (1 << 20));
        let mut area = vec![0u8; area_end.saturating_sub(h.names_start) as usize];
        read_exact_at(&*self.file, h.names_start, &mut area, "add-cow name area")?;
        let stray = area.iter().enumerate().position(|(i, &b)| {
            let at = h.names_start + i as u64;
            b != 0 && !names.iter().any(|&(s, e)| at >= s && at < e)
        });
        if let Some(i) = stray {
            r.add(self.finding(Severity::Warning, "reserved-nonzero", h.names_start + i as u64, 1, String::from(
                "a byte of the header outside the names is not zero (reserved space)")));
        }
        if h.all_allocated {
            r.add(self.finding(Severity::Info, "all-allocated", if h.generation == Generation::V11 { 28 } else { 32 }, 8, String::from(
                "ALL_ALLOCATED is set: every cluster is in the image file; the bitmap and the backing file are not used, and the image file can be used on its own")));
        }
        match (&self.image, self.info.companions.first()) {
            (ImageFile::Absent(None), Some(c)) => r.add(self.finding(Severity::Warning, "image-file-missing", c.offset, h.image.size, format!(
                "the image file '{}' is missing: add it. Until then the disk size is unknown; the map shows what the bitmap can describe", c.name))),
            (ImageFile::Absent(Some(e)), Some(c)) => r.add(self.finding(Severity::Warning, "image-file-unreadable", c.offset, h.image.size, format!(
                "the image file '{}' could not be read: {}", c.name, e))),
            _ => {}
        }
        let stored = self.file.size().saturating_sub(self.bitmap.offset);
        if !h.all_allocated && stored < self.bitmap.bytes() {
            r.add(self.finding(Severity::Warning, "bitmap-short", self.bitmap.offset + stored, self.bitmap.bytes() - stored, format!(
                "the bitmap has {} of the {} bytes the disk needs; the missing bits read as 0 (backing file)", stored, self.bitmap.bytes())));
        }
        let (set, tail) = self.bitmap.count(&*self.file)?;
        r.allocated_clusters = set;
        if tail {
            r.add(self.finding(Severity::Warning, "bits-past-end", self.bitmap.offset + self.bitmap.bytes() - 1, 1, String::from(
                "bits are set past the disk's last cluster; they are ignored")));
        }
        r.add(self.finding(Severity::Info, "bits-set", self.bitmap.offset, self.bitmap.bytes(), format!(
            "{} of {} clusters are in the image file ({} bits set)", set, self.bitmap.bits, set)));
        Ok(r)
    }
}
