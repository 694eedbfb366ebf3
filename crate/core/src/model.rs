//! The vocabulary every format speaks: header fields, extents, findings, regions.
//! Serialised (feature `serde`) in kebab-case, the naming qemu-img uses for its JSON.
use alloc::{string::String, vec::Vec};

#[cfg(feature = "serde")]
use serde::Serialize;

/// Offsets and sizes are exact JS numbers only below 2^53; anything larger (a hostile
/// header value) is written as a hex string so one bad field cannot break a report.
#[cfg(feature = "serde")]
pub fn ser_u64<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    if *v < (1u64 << 53) {
        s.serialize_u64(*v)
    } else {
        s.collect_str(&format_args!("{:#x}", v))
    }
}

#[cfg(feature = "serde")]
fn ser_opt_u64<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => ser_u64(v, s),
        None => s.serialize_none(),
    }
}

#[cfg(feature = "serde")]
fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{}", Hex(v)))
}

/// Bytes as lowercase hex, no separators.
pub struct Hex<'a>(pub &'a [u8]);
impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{:02x}", b))
    }
}

/// Whether a layout comes from published source code or was reconstructed from prose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub enum LayoutStatus {
    Confirmed,
    Reconstructed,
}

/// One header field: where it is, its bytes, and what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct Field {
    pub name: String,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub offset: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub size: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_hex"))]
    pub raw: Vec<u8>,
    pub value: String,
    pub note: String,
}

/// A run of host bytes with a role (header, table, data) for the layout view and the
/// metadata class of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct Region {
    pub name: String,
    pub kind: RegionKind,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub offset: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub length: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub enum RegionKind {
    Header,
    Table,
    Bitmap,
    Journal,
    Data,
}

/// One record of a format's journal or log (FVD's journal, VHDX's log), for a generic list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct Record {
    /// What the record is, in words ("bitmap update", "table update", "malformed").
    pub kind: String,
    /// Byte offset of the record in the image file.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub offset: u64,
    /// Its length in bytes.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub length: u64,
    /// Decoded fields, in record order: (name, value).
    pub fields: Vec<(String, String)>,
    /// What the record does, or why it is ignored, in a sentence.
    pub note: String,
    /// Superseded (older than what the format considers current): never applied.
    pub stale: bool,
    /// Applied to the metadata of the view that was opened.
    pub applied: bool,
}

/// Version numbers per fixed-size block, for formats that stamp blocks (GOW3: the session
/// that last changed each 64 KiB block; 0 = never written). `versions[i]` belongs to block
/// `first_block + i`, which covers guest bytes `[(first_block+i)*granularity, ..+granularity)`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct BlockVersions {
    /// Guest bytes per block.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub granularity: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub first_block: u64,
    pub versions: Vec<u32>,
}

/// A granularity the format keeps its metadata at, for drawing the map at it (FVD's bitmap
/// blocks and table chunks, a cow bitmap's 512-byte sectors).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct Grid {
    /// What one cell is, in words ("bitmap block", "table chunk").
    pub name: String,
    /// Guest bytes per cell.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub size: u64,
}

/// Where the bytes of a guest range come from, at one layer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Stored as-is in file `file` (0 = the image itself) at `offset`.
    Data { file: u16, offset: u64 },
    /// Reads as zeros; the backing file is not consulted.
    Zero,
    /// Stored in `file` at `offset`, but the host holds no bytes there (a hole in a sparse
    /// raw file): reads as zeros.
    Hole { file: u16, offset: u64 },
    /// Not stored here: read the backing file (zeros if there is none).
    Unallocated,
    /// Stored encoded; the format's `read_computed` decodes it. `offset` is where it starts.
    Compressed { file: u16, offset: u64 },
    /// The table entry for this range is invalid; `entry` is the byte offset of that entry.
    Invalid { entry: u64 },
    /// Stored in companion file `file`, which was not given.
    Missing { file: u16 },
    /// Read through a nested image (a companion file in its own format): `read_computed`.
    Computed { file: u16 },
}

/// A guest range `[start, start+length)` of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub length: u64,
    pub kind: Kind,
}

impl Extent {
    /// Append to `out`, merging with the previous extent when it continues it.
    pub fn push(out: &mut Vec<Extent>, e: Extent) {
        if e.length == 0 {
            return;
        }
        if let Some(last) = out.last_mut() {
            if last.start + last.length == e.start {
                let merged = match (last.kind, e.kind) {
                    (Kind::Data { file: f1, offset: o1 }, Kind::Data { file: f2, offset: o2 })
                    | (Kind::Hole { file: f1, offset: o1 }, Kind::Hole { file: f2, offset: o2 }) => {
                        f1 == f2 && o1 + last.length == o2
                    }
                    (Kind::Zero, Kind::Zero) | (Kind::Unallocated, Kind::Unallocated) => true,
                    (Kind::Invalid { entry: a }, Kind::Invalid { entry: b }) => a == b,
                    (Kind::Missing { file: a }, Kind::Missing { file: b }) | (Kind::Computed { file: a }, Kind::Computed { file: b }) => a == b,
                    _ => false,
                };
                if merged {
                    last.length += e.length;
                    return;
                }
            }
        }
        out.push(e);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub enum Severity {
    /// Worth knowing, not wrong (a feature in use, a flag set).
    Info,
    /// Unusual or risky, but the data reads as the format defines.
    Warning,
    /// Space the image holds but does not use (qemu-img check: leaked clusters).
    Leak,
    /// Metadata that is wrong: data may read differently from what was written.
    Corruption,
}

/// A consistency-check result tied to the bytes it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct Finding {
    pub severity: Severity,
    /// Stable machine name, e.g. `l2-entry-invalid`.
    pub code: &'static str,
    /// Which file of the chain (layer name) it concerns.
    pub file: String,
    /// Byte offset in that file of the structure at fault.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_opt_u64"))]
    pub offset: Option<u64>,
    /// Length of the bytes at fault.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub length: u64,
    /// Guest offset affected, when there is one.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_opt_u64"))]
    pub guest: Option<u64>,
    /// A sentence a support engineer understands.
    pub message: String,
}

/// What a backing-file reference in a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct BackingRef {
    pub name: String,
    /// The format the header names for it, if any ("raw" for QED's NO_PROBE).
    pub format: Option<String>,
    /// Where the name is stored in the image.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub offset: u64,
}

/// A file an image needs besides its backing file (a data file, a bitmap's raw image).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct Companion {
    /// What it is for, in words ("raw data file", "image file").
    pub role: &'static str,
    /// The name as the header writes it.
    pub name: String,
    /// Where the name is stored in the image.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub offset: u64,
    /// The file it resolved to, or None when it is missing: the user must add it.
    pub found: Option<String>,
}

/// The facts every format states about an opened image.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct ImageInfo {
    pub format: &'static str,
    /// The variant or version, in words ("QED", "qcow2 v3", "FVD variant C").
    pub variant: String,
    pub layout: LayoutStatus,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub virtual_size: u64,
    /// Allocation granularity: one map cell per cluster.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub cluster_size: u64,
    pub backing: Option<BackingRef>,
    /// The image says it was not closed cleanly (QED NEED_CHECK, qcow2 dirty bit).
    pub dirty: bool,
    /// Files besides the backing file that hold this image's data; index i is file i+1.
    pub companions: Vec<Companion>,
}

/// What a check found: findings to read, and counts in qemu-img check's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct CheckResult {
    pub findings: Vec<Finding>,
    /// Findings not stored because `limits::MAX_FINDINGS` was reached.
    pub findings_dropped: u64,
    pub corruptions: u64,
    pub leaks: u64,
    pub check_errors: u64,
    pub allocated_clusters: u64,
    pub fragmented_clusters: u64,
    pub total_clusters: u64,
    /// Compressed clusters of the current disk (qemu-img check's `compressed-clusters`).
    pub compressed_clusters: u64,
    /// Where the image's last used cluster ends (qemu-img check's `image-end-offset`), for
    /// formats that count host clusters.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_opt_u64"))]
    pub image_end_offset: Option<u64>,
}

impl CheckResult {
    pub fn add(&mut self, f: Finding) {
        self.add_counted(f, 1)
    }

    /// Add a finding that stands for `n` corruptions in qemu-img check's count (one
    /// finding for a table whose every cluster is referenced twice, say). Leaks are counted
    /// per cluster by the format itself; one finding covers a run of them.
    pub fn add_counted(&mut self, f: Finding, n: u64) {
        let severity = f.severity;
        self.add_with(severity, n, || f)
    }

    /// Add a finding that `make` builds only if it will be kept: a loop over a table's
    /// entries calls this, so a table of millions of bad entries costs their count, not
    /// millions of messages that `limits::MAX_FINDINGS` then drops (4.4 million shared
    /// VDI blocks took 0.6 s to check, nearly all of it formatting).
    pub fn add_with(&mut self, severity: Severity, n: u64, make: impl FnOnce() -> Finding) {
        if severity == Severity::Corruption {
            self.corruptions += n;
        }
        if self.findings.len() < crate::limits::MAX_FINDINGS {
            let f = make();
            debug_assert_eq!(f.severity, severity);
            self.findings.push(f);
        } else {
            self.findings_dropped += 1;
        }
    }

    /// qemu-img check's exit code: 1 when metadata could not be read ("Check failed"),
    /// else 2 for corruption, 3 for leaks only, 0 when clean.
    pub fn exit_code(&self) -> i32 {
        if self.check_errors > 0 {
            1
        } else if self.corruptions > 0 {
            2
        } else if self.leaks > 0 {
            3
        } else {
            0
        }
    }
}

/// An internal snapshot (qcow2): a saved L1 table, listed with qemu-img info's field names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct Snapshot {
    /// The unique ID string ("1", "2", ...).
    pub id: String,
    pub name: String,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub vm_state_size: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub date_sec: u64,
    pub date_nsec: u32,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub vm_clock_sec: u64,
    pub vm_clock_nsec: u32,
    /// Record/replay instruction count, when the entry stores one (not -1).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_u64"))]
    pub icount: Option<u64>,
    /// The disk size when the snapshot was taken, when the entry stores it.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_opt_u64"))]
    pub virtual_size: Option<u64>,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub l1_table_offset: u64,
    /// Entries in the snapshot's L1 table.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub l1_size: u64,
    /// Byte offset of the snapshot's entry in the snapshot table.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub offset: u64,
}

/// What each host cluster of an image file is used for, as a picture: one class per cell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize), serde(rename_all = "kebab-case"))]
pub struct HostMap {
    /// Host bytes per cell: the cluster size, or a power-of-two multiple of it for big files.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub cell_size: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser_u64"))]
    pub file_size: u64,
    /// One class per cell, an index into `legend`.
    pub classes: Vec<u8>,
    /// The name of each class ("free", "data", "L2 table", "leaked", ...).
    pub legend: Vec<&'static str>,
    /// Host bytes of each class, indexed like `legend`.
    pub totals: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity, k: usize) -> Finding {
        Finding { severity, code: "t", file: String::new(), offset: Some(k as u64), length: 1, guest: None, message: alloc::format!("{}", k) }
    }

    #[test]
    fn findings_past_the_limit_are_counted_and_never_made() {
        let max = crate::limits::MAX_FINDINGS;
        let mut r = CheckResult::default();
        let mut made = 0;
        for k in 0..max + 10 {
            r.add_with(Severity::Corruption, 2, || {
                made += 1;
                finding(Severity::Corruption, k)
            });
        }
        r.add_with(Severity::Leak, 1, || unreachable!("the list is full"));
        r.add(finding(Severity::Warning, 0));
        assert_eq!(made, max);
        assert_eq!(r.findings.len(), max);
        assert_eq!(r.findings.last().map(|f| f.offset), Some(Some(max as u64 - 1)));
        assert_eq!(r.findings_dropped, 12);
        assert_eq!(r.corruptions, 2 * (max as u64 + 10));
        assert_eq!(r.leaks, 0, "leaks are counted per cluster by the format itself");
    }
}
