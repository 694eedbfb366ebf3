//! The VMDK descriptor: a small text file (or text embedded in a sparse extent) that names
//! the extents, the content ID, the parent, and a "disk database" of ddb.* keys. Parsed
//! line by line, every line kept with its byte offset so the page can show each one with
//! what it means. Nothing here trusts the text: odd bytes, missing quotes and numbers too
//! large for any disk become problems to report, never panics.
use alloc::{format, string::String, vec::Vec};

use crate::formats::fmt::size;
use crate::limits;
use crate::model::{Field, Severity};

/// Longest line kept as it is; longer ones are cut (and reported).
const MAX_LINE: usize = 4096;
/// Most lines read: room for the most extents a descriptor may list, and the usual keys.
pub const MAX_LINES: usize = 16384;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// "RW", "RDONLY" or "NOACCESS".
    pub access: String,
    /// Size in 512-byte sectors; None when missing or not a number.
    pub sectors: Option<u64>,
    /// "FLAT", "SPARSE", "ZERO", "VMFS", "VMFSSPARSE", "VMFSRDM", "VMFSRAW", "SESPARSE", ...
    pub kind: String,
    /// The file name between the quotes.
    pub name: Option<String>,
    /// Byte offset of the name within the descriptor text.
    pub name_at: u64,
    /// The offset field (sectors into the file), for FLAT and VMFS extents.
    pub offset: Option<u64>,
    /// An offset field was written but is not a number.
    pub bad_offset: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    Blank,
    Comment,
    /// `key = value` or `key="value"`; `value_at` is the value's offset in the text.
    Pair { key: String, value: String, value_at: u64 },
    Extent(ExtentLine),
    /// Anything else: kept and shown, and reported.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Byte offset of the line within the descriptor text.
    pub offset: u64,
    /// Its bytes, without the line end.
    pub len: u64,
    pub text: String,
    pub raw: Vec<u8>,
    pub kind: LineKind,
}

/// Something wrong with the text, at a byte offset within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub code: &'static str,
    pub offset: u64,
    pub len: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub lines: Vec<Line>,
    pub problems: Vec<Problem>,
    /// Bytes of text (up to the first NUL).
    pub text_len: u64,
}

fn problem(severity: Severity, code: &'static str, offset: u64, len: u64, message: String) -> Problem {
    Problem { severity, code, offset, len, message }
}

/// Does the start of a file look like a descriptor? The signature comment, or QEMU's own
/// rule (comments and blank lines, then `version=1|2|3`), or a text with both a
/// `version=` and a `createType=` line.
pub fn looks_like(head: &[u8]) -> bool {
    if head.starts_with(b"# Disk DescriptorFile") {
        return true;
    }
    // QEMU's rule (block/vmdk.c vmdk_probe), restated.
    let mut p = 0;
    while p < head.len() {
        let end = head[p..].iter().position(|&b| b == b'\n').map_or(head.len(), |i| p + i);
        let line = &head[p..end];
        if line.first() == Some(&b'#') {
            p = end + 1;
            continue;
        }
        if line.first() == Some(&b' ') {
            let rest: &[u8] = line.strip_suffix(b"\r").unwrap_or(line);
            if rest.iter().all(|&b| b == b' ') && end < head.len() {
                p = end + 1;
                continue;
            }
            break;
        }
        if end < head.len() {
            let l = line.strip_suffix(b"\r").unwrap_or(line);
            if matches!(l, b"version=1" | b"version=2" | b"version=3") {
                return true;
            }
        }
        break;
    }
    // Any descriptor-like text: printable up to the first NUL, with both keys on lines.
    let text_end = head.iter().position(|&b| b == 0).unwrap_or(head.len());
    let text = &head[..text_end];
    if text.is_empty() || !text.iter().all(|&b| b >= 0x20 || b == b'\n' || b == b'\r' || b == b'\t') {
        return false;
    }
    let has = |key: &[u8]| {
        text.split(|&b| b == b'\n').any(|l| {
            let l = l.trim_ascii_start();
            l.starts_with(key) && l[key.len()..].trim_ascii_start().starts_with(b"=")
        })
    };
    has(b"version") && has(b"createType")
}

/// Parse a u64 written in decimal; None for anything else (sign, hex, overflow).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The next whitespace-separated token of `s` from `at`: (start, end).
fn token(s: &str, at: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let start = at + b[at..].iter().position(|c| !c.is_ascii_whitespace())?;
    let end = b[start..].iter().position(|c| c.is_ascii_whitespace()).map_or(b.len(), |i| start + i);
    Some((start, end))
}

pub const ACCESS: [&str; 3] = ["RW", "RDONLY", "NOACCESS"];

impl Descriptor {
    /// Parse `bytes` (the descriptor's area; text ends at the first NUL).
    pub fn parse(bytes: &[u8]) -> Descriptor {
        let text_len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let text = &bytes[..text_len];
        let mut d = Descriptor { lines: Vec::new(), problems: Vec::new(), text_len: text_len as u64 };
        let mut p = 0usize;
        while p < text.len() {
            if d.lines.len() == MAX_LINES {
                d.problems.push(problem(Severity::Warning, "descriptor-lines", p as u64, (text.len() - p) as u64, format!(
                    "the descriptor has more than {} lines; the rest is not read", MAX_LINES)));
                break;
            }
            let end = text[p..].iter().position(|&b| b == b'\n').map_or(text.len(), |i| p + i);
            let mut raw = &text[p..end];
            if let Some(r) = raw.strip_suffix(b"\r") {
                raw = r;
            }
            d.line(p as u64, raw);
            p = end + 1;
        }
        d
    }

    fn line(&mut self, offset: u64, raw: &[u8]) {
        let len = raw.len() as u64;
        let kept = &raw[..raw.len().min(MAX_LINE)];
        if raw.len() > MAX_LINE {
            self.problems.push(problem(Severity::Warning, "descriptor-line-long", offset, len, format!(
                "this line is {} bytes long; only its first {} are shown", raw.len(), MAX_LINE)));
        }
        let text = match core::str::from_utf8(kept) {
            Ok(t) => String::from(t),
            Err(e) if raw.len() > MAX_LINE && e.error_len().is_none() => String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned(),
            Err(e) => {
                self.problems.push(problem(Severity::Warning, "descriptor-not-utf8", offset + e.valid_up_to() as u64, 1, String::from(
                    "this line is not valid UTF-8 text; the odd bytes are shown as \u{fffd}")));
                String::from_utf8_lossy(kept).into_owned()
            }
        };
        let trimmed = text.trim();
        let lead = (text.len() - text.trim_start().len()) as u64;
        let kind = if trimmed.is_empty() {
            LineKind::Blank
        } else if trimmed.starts_with('#') {
            LineKind::Comment
        } else if let Some(x) = self.extent(&text, offset) {
            LineKind::Extent(x)
        } else if let Some(eq) = trimmed.find('=') {
            let key = String::from(trimmed[..eq].trim());
            let after = &trimmed[eq + 1..];
            let value_start = eq + 1 + (after.len() - after.trim_start().len());
            let v = after.trim();
            let (value, value_at) = if let Some(inner) = v.strip_prefix('"') {
                match inner.find('"') {
                    Some(close) => {
                        if close + 1 != inner.len() {
                            self.problems.push(problem(Severity::Warning, "descriptor-syntax", offset, len, format!(
                                "text after the closing quote of {} is ignored", key)));
                        }
                        (String::from(&inner[..close]), offset + lead + value_start as u64 + 1)
                    }
                    None => {
                        self.problems.push(problem(Severity::Warning, "descriptor-syntax", offset, len, format!(
                            "the value of {} has no closing quote; QEMU cannot read such a value", key)));
                        (String::from(inner), offset + lead + value_start as u64 + 1)
                    }
                }
            } else {
                (String::from(v), offset + lead + value_start as u64)
            };
            if key.is_empty() {
                self.problems.push(problem(Severity::Warning, "descriptor-syntax", offset, len, String::from("a line with '=' but no key before it")));
            }
            LineKind::Pair { key, value, value_at }
        } else {
            self.problems.push(problem(Severity::Warning, "descriptor-line-unknown", offset, len, String::from(
                "a line that is not a comment, a key = value pair or an extent: it is ignored")));
            LineKind::Other
        };
        self.lines.push(Line { offset, len, text, raw: kept.to_vec(), kind });
    }

    /// `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`, when the line starts with an access word.
    fn extent(&mut self, text: &str, offset: u64) -> Option<ExtentLine> {
        let (a0, a1) = token(text, 0)?;
        let access = &text[a0..a1];
        if !ACCESS.contains(&access) {
            return None;
        }
        let len = text.len() as u64;
        let bad = |code, message: String| problem(Severity::Warning, code, offset, len, message);
        let mut x = ExtentLine {
            access: String::from(access),
            sectors: None,
            kind: String::new(),
            name: None,
            name_at: offset,
            offset: None,
            bad_offset: false,
        };
        let mut probs = Vec::new();
        let Some((s0, s1)) = token(text, a1) else {
            self.problems.push(bad("extent-line-invalid", String::from("an extent line with no size")));
            return Some(x);
        };
        x.sectors = decimal(&text[s0..s1]);
        match x.sectors {
            None => probs.push(bad("extent-line-invalid", format!("the extent size '{}' is not a number of sectors", &text[s0..s1]))),
            Some(n) if n.checked_mul(512).is_none_or(|b| b > limits::MAX_VIRTUAL_SIZE) => {
                probs.push(bad("extent-line-invalid", format!("the extent size {} sectors is larger than any disk diskscope reads", n)))
            }
            _ => {}
        }
        let Some((t0, t1)) = token(text, s1) else {
            probs.push(bad("extent-line-invalid", String::from("an extent line with no type")));
            self.problems.append(&mut probs);
            return Some(x);
        };
        x.kind = String::from(&text[t0..t1]);
        let mut rest = t1;
        if let Some((n0, _)) = token(text, rest) {
            let b = text.as_bytes();
            if b[n0] == b'"' {
                match text[n0 + 1..].find('"') {
                    Some(close) => {
                        x.name = Some(String::from(&text[n0 + 1..n0 + 1 + close]));
                        rest = n0 + 2 + close;
                    }
                    None => {
                        probs.push(bad("extent-line-invalid", String::from("the extent file name has no closing quote")));
                        x.name = Some(String::from(text[n0 + 1..].trim_end()));
                        rest = text.len();
                    }
                }
                x.name_at = offset + n0 as u64 + 1;
            } else {
                let (_, n1) = token(text, rest).expect("a token is there");
                probs.push(bad("extent-line-invalid", String::from("the extent file name is not in quotes; QEMU skips such a line")));
                x.name = Some(String::from(&text[n0..n1]));
                x.name_at = offset + n0 as u64;
                rest = n1;
            }
        }
        if let Some((o0, o1)) = token(text, rest) {
            x.offset = decimal(&text[o0..o1]);
            if x.offset.is_none() {
                x.bad_offset = true;
                probs.push(bad("extent-line-invalid", format!("the extent offset '{}' is not a number of sectors", &text[o0..o1])));
            } else if x.offset.and_then(|o| o.checked_mul(512)).is_none() {
                x.bad_offset = true;
                probs.push(bad("extent-line-invalid", String::from("the extent offset is too large for any file")));
            }
            if let Some((e0, _)) = token(text, o1) {
                probs.push(bad("extent-line-invalid", format!("unexpected text after the extent offset: '{}'", &text[e0..])));
            }
        }
        if let Some(n) = &x.name {
            if n.len() as u64 >= limits::MAX_NAME_BYTES {
                probs.push(bad("extent-line-invalid", format!("the extent file name is {} bytes long", n.len())));
            } else if n.is_empty() && x.kind != "ZERO" {
                probs.push(bad("extent-line-invalid", String::from("the extent file name is empty")));
            }
        }
        self.problems.append(&mut probs);
        Some(x)
    }

    /// The first `key = value` line with this key: (value, line index, value offset).
    pub fn get(&self, key: &str) -> Option<(&str, usize, u64)> {
        self.lines.iter().enumerate().find_map(|(i, l)| match &l.kind {
            LineKind::Pair { key: k, value, value_at } if k == key => Some((value.as_str(), i, *value_at)),
            _ => None,
        })
    }

    pub fn extents(&self) -> impl Iterator<Item = (usize, &ExtentLine)> {
        self.lines.iter().enumerate().filter_map(|(i, l)| match &l.kind {
            LineKind::Extent(x) => Some((i, x)),
            _ => None,
        })
    }

    /// Keys written more than once: the first is the one read.
    pub fn duplicates(&self) -> Vec<(u64, u64, String)> {
        let mut out = Vec::new();
        for (i, l) in self.lines.iter().enumerate() {
            if let LineKind::Pair { key, .. } = &l.kind {
                if self.get(key).is_some_and(|(_, first, _)| first != i) {
                    out.push((l.offset, l.len, key.clone()));
                }
            }
        }
        out
    }

    /// One field per line that says something (blank lines are left out), with its byte
    /// offset in the file: `base` is where the descriptor text starts in that file.
    pub fn fields(&self, base: u64) -> Vec<Field> {
        let mut n = 0;
        self.lines
            .iter()
            .filter(|l| l.kind != LineKind::Blank)
            .map(|l| {
                let (name, note) = match &l.kind {
                    LineKind::Comment => (String::from("comment"), comment_note(&l.text)),
                    LineKind::Pair { key, value, .. } => (key.clone(), pair_note(key, value)),
                    LineKind::Extent(x) => {
                        n += 1;
                        (format!("extent {}", n), extent_note(x))
                    }
                    LineKind::Other | LineKind::Blank => (String::from("line"), String::from("not a comment, a key = value pair or an extent line: ignored")),
                };
                Field { name, offset: base.saturating_add(l.offset), size: l.len, raw: l.raw.clone(), value: l.text.clone(), note }
            })
            .collect()
    }
}

fn comment_note(text: &str) -> String {
    let t = text.trim();
    String::from(match t {
        "# Disk DescriptorFile" => "comment: the descriptor's signature line",
        "# Extent description" => "comment: the extent lines follow",
        "# The Disk Data Base" | "#DDB" => "comment: the disk database (ddb.* keys) follows",
        "# Change Tracking File" => "comment: the changed-block-tracking file line follows",
        _ => "comment: ignored by readers",
    })
}

/// What a createType value means.
pub fn create_type_note(v: &str) -> Option<&'static str> {
    Some(match v {
        "monolithicSparse" => "one sparse file holding the header, this descriptor, the grain tables and the data",
        "monolithicFlat" => "this descriptor plus one flat (preallocated) data file",
        "twoGbMaxExtentSparse" => "this descriptor plus sparse extent files of at most 2 GiB each",
        "twoGbMaxExtentFlat" => "this descriptor plus flat extent files of at most 2 GiB each",
        "streamOptimized" => "one sparse file with compressed grains and metadata markers, written in one pass (OVF/OVA exports)",
        "vmfs" => "ESX: this descriptor plus one flat extent on VMFS",
        "vmfsSparse" => "ESX: a sparse (COWD) delta disk on VMFS, usually a snapshot",
        "vmfsThin" => "ESX: a thin-provisioned flat disk on VMFS",
        "vmfsRaw" | "vmfsRawDeviceMap" | "vmfsPassthroughRawDeviceMap" => "ESX: a raw device mapping: the data is on a physical device",
        "fullDevice" | "partitionedDevice" => "hosted: the data is on a physical disk or its partitions",
        "seSparse" => "ESX: space-efficient sparse delta disk",
        "vsanSparse" => "vSAN sparse delta disk",
        "custom" => "a custom layout of extents",
        _ => return None,
    })
}

fn pair_note(key: &str, value: &str) -> String {
    let s = |t: &str| String::from(t);
    match key {
        "version" => s("descriptor format version (1; 2 or 3 in newer VMware products)"),
        "encoding" => s("character set of this text (extent and parent file names)"),
        "CID" => match u32::from_str_radix(value, 16) {
            Ok(_) => s("content ID: a random 32-bit number (hex) renewed on the first write after each open; a child stores it as its parentCID"),
            Err(_) => s("content ID, but not a hexadecimal 32-bit number: QEMU refuses the image"),
        },
        "parentCID" => match u32::from_str_radix(value, 16) {
            Ok(0xffff_ffff) => s("the parent's content ID; ffffffff: this disk has no parent"),
            Ok(_) => s("the content ID the parent had when this child was made: the parent's CID must still be this, or the parent changed under it"),
            Err(_) => s("the parent's content ID, but not a hexadecimal 32-bit number: QEMU refuses the image"),
        },
        "createType" => match create_type_note(value) {
            Some(n) => format!("disk type: {}", n),
            None => s("disk type, but not one of the types the VMDK specification defines"),
        },
        "parentFileNameHint" => s("the parent (backing) disk, relative to this descriptor's folder: unallocated grains read from it"),
        "isNativeSnapshot" => s("whether the parent is a storage-array (native) snapshot"),
        "changeTrackPath" => s("the changed-block-tracking (CBT) file of this disk"),
        "ddb.virtualHWVersion" => s("disk database: VMware virtual hardware version the disk was made for"),
        "ddb.geometry.cylinders" => s("disk database: cylinders of the BIOS geometry the guest sees"),
        "ddb.geometry.heads" => s("disk database: heads of the geometry (16 for IDE, 255 for SCSI adapters)"),
        "ddb.geometry.sectors" => s("disk database: sectors per track of the geometry (63)"),
        "ddb.geometry.biosCylinders" | "ddb.geometry.biosHeads" | "ddb.geometry.biosSectors" => {
            s("disk database: the geometry the virtual BIOS reports (may differ from the disk's own)")
        }
        "ddb.adapterType" => s("disk database: the controller the guest sees (ide, buslogic, lsilogic, legacyESX)"),
        "ddb.toolsVersion" => s("disk database: version of VMware Tools in the guest (2147483647 = unknown)"),
        "ddb.toolsInstallType" => s("disk database: how VMware Tools were installed in the guest"),
        "ddb.uuid" | "ddb.uuid.image" => s("disk database: the disk's UUID"),
        "ddb.uuid.parent" => s("disk database: the parent disk's UUID"),
        "ddb.uuid.modification" => s("disk database: a UUID renewed when the disk changes"),
        "ddb.uuid.parentmodification" => s("disk database: the parent's modification UUID when this child was made"),
        "ddb.longContentID" => s("disk database: a 128-bit content ID (newer products)"),
        "ddb.thinProvisioned" => s("disk database: 1 = the disk is thin-provisioned"),
        "ddb.deletable" => s("disk database: whether the disk may be deleted with its virtual machine"),
        "ddb.encoding" => s("disk database: character set of the descriptor"),
        "ddb.sidecars" => s("disk database: sidecar files attached to the disk"),
        "ddb.comment" => s("disk database: a comment"),
        k if k.starts_with("ddb.") => s("disk database entry: metadata for VMware products; readers of the data ignore it"),
        _ => s("a key = value line the VMDK specification does not define; readers ignore it"),
    }
}

fn extent_note(x: &ExtentLine) -> String {
    let access = match x.access.as_str() {
        "RW" => "read-write",
        "RDONLY" => "read-only",
        _ => "no access",
    };
    let size_s = match x.sectors {
        Some(n) => match n.checked_mul(512) {
            Some(b) => format!("{} sectors ({})", n, size(b)),
            None => format!("{} sectors (too large)", n),
        },
        None => String::from("size not readable"),
    };
    let kind = match x.kind.as_str() {
        "FLAT" => "flat: the data as it is, from the offset in the file",
        "SPARSE" => "sparse: a hosted sparse extent file with its own header and grain tables",
        "ZERO" => "zero: reads as zeros, stored nowhere",
        "VMFS" => "VMFS flat extent: the data as it is",
        "VMFSSPARSE" => "VMFS sparse (COWD) extent with grain tables",
        "VMFSRDM" | "VMFSRAW" => "raw device mapping: the data is on a physical device",
        "SESPARSE" => "ESX space-efficient sparse extent",
        "" => "type missing",
        _ => "unknown extent type",
    };
    let mut s = format!("extent: {}, {}, {}", access, size_s, kind);
    if let Some(n) = &x.name {
        s.push_str(&format!(", in \"{}\"", n));
    }
    if let Some(o) = x.offset {
        s.push_str(&format!(", starting at sector {} of that file", o));
    }
    s
}
