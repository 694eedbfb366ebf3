//! The FVD journal: 512-byte sectors, each written atomically and read on its own, holding
//! records packed back to back; a u32 0 ends a sector early (FORMATS.md 3.5, 3.9).
//!
//! - bitmap update (type 0x3F2AB8ED), 16 bytes in every variant: u32 type, u32 sector
//!   count, 64-bit first sector (guest 512-byte sectors).
//! - table update (type 0xB4E6F7AC): variant A: u32 type, u32 first chunk, u32 count, then
//!   the entries; variants B and C: u32 type, u64 journal epoch, u32 count, u32 first
//!   chunk, then the entries. Entries are table entries as the table stores them (dirty
//!   bit possibly set).
//!
//! Replay (done in memory, never on the file) sets bitmap bits (they only go from 0 to 1)
//! and writes table entries. In B and C a table record whose epoch is below the header's
//! `stable_journal_epoch` is stale and ignored; among the others a higher epoch wins, and
//! records of one epoch apply in journal order.
use alloc::{format, string::String, vec::Vec};

use super::header::Variant;
use crate::formats::bytes::{le32, le64};

pub const SECTOR: usize = 512;
pub const BITMAP_JRECORD: u32 = 0x3F2A_B8ED;
pub const TABLE_JRECORD: u32 = 0xB4E6_F7AC;
/// A table entry for a chunk with no storage: reads zeros.
pub const EMPTY: u32 = 0xFFFF_FFFF;
/// Set in a table entry changed but not yet flushed; never part of the chunk id.
pub const DIRTY: u32 = 0x8000_0000;
/// Records decoded at most; a journal holding more is reported, the rest not read.
pub const MAX_RECORDS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JKind {
    /// Sets the bitmap bits of `sectors` guest sectors from `begin`.
    Bitmap { sectors: u32, begin: u64 },
    /// `count` table entries for chunks `first..first+count`; `epoch` in B and C.
    Table { epoch: Option<u64>, first: u32, count: u32 },
    /// Bytes that are not a record: `word` is the type found, `reason` says what is wrong.
    Malformed { word: u32, reason: String },
}

/// One decoded journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JRecord {
    /// Byte offset in the image file.
    pub offset: u64,
    pub length: u64,
    pub kind: JKind,
    /// B and C: a table record older than `stable_journal_epoch`.
    pub stale: bool,
    /// Applied to the metadata of the opened view.
    pub applied: bool,
    /// What is wrong with a well-formed record (a range past the disk or the table).
    pub problem: Option<String>,
}

impl JRecord {
    /// Size of a table record's fixed part in `variant`.
    pub fn table_header(variant: Variant) -> usize {
        if variant == Variant::A {
            12
        } else {
            20
        }
    }
}

/// Decode every record of every sector of `journal` (the journal's bytes, read from file
/// offset `at`). Returns the records and whether decoding stopped at [`MAX_RECORDS`].
pub fn parse(variant: Variant, journal: &[u8], at: u64, stable_epoch: Option<u64>) -> (Vec<JRecord>, bool) {
    let mut out = Vec::new();
    for (k, sector) in journal.chunks(SECTOR).enumerate() {
        let base = at.saturating_add((k * SECTOR) as u64);
        let mut pos = 0usize;
        let room = sector.len();
        let malformed = |out: &mut Vec<JRecord>, pos: usize, word: u32, reason: String| {
            out.push(JRecord {
                offset: base + pos as u64,
                length: (room - pos) as u64,
                kind: JKind::Malformed { word, reason },
                stale: false,
                applied: false,
                problem: None,
            });
        };
        while pos + 4 <= room {
            if out.len() >= MAX_RECORDS {
                return (out, true);
            }
            let word = le32(sector, pos);
            match word {
                0 => break,
                BITMAP_JRECORD => {
                    if pos + 16 > room {
                        malformed(&mut out, pos, word, format!(
                            "a bitmap update record needs 16 bytes, but only {} remain in its sector", room - pos));
                        break;
                    }
                    let kind = JKind::Bitmap { sectors: le32(sector, pos + 4), begin: le64(sector, pos + 8) };
                    out.push(JRecord { offset: base + pos as u64, length: 16, kind, stale: false, applied: false, problem: None });
                    pos += 16;
                }
                TABLE_JRECORD => {
                    let hdr = JRecord::table_header(variant);
                    if pos + hdr > room {
                        malformed(&mut out, pos, word, format!(
                            "a table update record needs {} bytes before its entries, but only {} remain in its sector", hdr, room - pos));
                        break;
                    }
                    let (epoch, count, first) = match variant {
                        Variant::A => (None, le32(sector, pos + 8), le32(sector, pos + 4)),
                        _ => (Some(le64(sector, pos + 4)), le32(sector, pos + 12), le32(sector, pos + 16)),
                    };
                    let len = hdr as u64 + 4 * count as u64;
                    if pos as u64 + len > room as u64 {
                        malformed(&mut out, pos, word, format!(
                            "a table update record claims {} entries, but its sector has room for {}", count, (room - pos - hdr) / 4));
                        break;
                    }
                    let stale = matches!((epoch, stable_epoch), (Some(e), Some(s)) if e < s);
                    let kind = JKind::Table { epoch, first, count };
                    out.push(JRecord { offset: base + pos as u64, length: len, kind, stale, applied: false, problem: None });
                    pos += len as usize;
                }
                _ => {
                    malformed(&mut out, pos, word, format!(
                        "unknown record type {:#010x} (neither a bitmap update, a table update nor 0, which ends a sector); the rest of the sector is not read", word));
                    break;
                }
            }
        }
    }
    (out, false)
}

/// What replay writes to: the bitmap (bytes, meaningful bits, guest bytes per bit, guest
/// bytes the bitmap covers) and the table (LE u32 entries).
pub struct Targets<'a> {
    pub bitmap: Option<(&'a mut [u8], u64, u64, u64)>,
    pub table: Option<&'a mut [u8]>,
    pub virtual_size: u64,
}

/// Set bits `[from, to)` (LSB first), whole bytes at a time in the middle.
fn set_bits(bits: &mut [u8], from: u64, to: u64) {
    let mut b = from;
    while b < to && b % 8 != 0 {
        bits[(b / 8) as usize] |= 1 << (b % 8);
        b += 1;
    }
    let whole = (to - b) / 8;
    bits[(b / 8) as usize..(b / 8 + whole) as usize].fill(0xff);
    b += whole * 8;
    while b < to {
        bits[(b / 8) as usize] |= 1 << (b % 8);
        b += 1;
    }
}

fn note(r: &mut JRecord, s: String) {
    match &mut r.problem {
        Some(p) => {
            p.push_str("; ");
            p.push_str(&s);
        }
        None => r.problem = Some(s),
    }
}

/// Apply the non-stale records to `t`. `journal` holds the journal's bytes from file
/// offset `at`, as given to [`parse`].
pub fn replay(variant: Variant, records: &mut [JRecord], journal: &[u8], at: u64, mut t: Targets) {
    // Bitmap records: order does not matter, bits only go from 0 to 1. Ranges are merged
    // first so that overlapping records cost nothing more.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for r in records.iter_mut() {
        let JKind::Bitmap { sectors, begin } = r.kind else { continue };
        let Some((_, nbits, block, covers)) = t.bitmap.as_ref() else { continue };
        let start = begin.checked_mul(512);
        let end = begin.checked_add(sectors as u64).and_then(|e| e.checked_mul(512));
        let (Some(start), Some(end)) = (start, end) else {
            note(r, String::from("its sector range overflows: not applied"));
            continue;
        };
        if sectors == 0 {
            note(r, String::from("it covers no sectors"));
        }
        if end > t.virtual_size {
            note(r, format!("it runs past the end of the disk ({} bytes)", t.virtual_size));
        }
        r.applied = true;
        let end = end.min(*covers);
        if start < end {
            // Blocks [first, last] overlap the range; clip to the bits the bitmap has.
            let (first, last) = (start / *block, ((end - 1) / *block).min(nbits.saturating_sub(1)));
            if first < *nbits && first <= last {
                ranges.push((first, last + 1));
            }
        }
    }
    if let Some((bits, ..)) = t.bitmap.as_mut() {
        ranges.sort_unstable();
        let mut cur: Option<(u64, u64)> = None;
        for (a, b) in ranges {
            match cur {
                Some((s, e)) if a <= e => cur = Some((s, e.max(b))),
                _ => {
                    if let Some((s, e)) = cur.replace((a, b)) {
                        set_bits(bits, s, e);
                    }
                }
            }
        }
        if let Some((s, e)) = cur {
            set_bits(bits, s, e);
        }
    }
    // Table records: by epoch, then in journal order.
    let Some(table) = t.table.as_mut() else { return };
    let entries = (table.len() / 4) as u64;
    let mut order: Vec<(u64, usize)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r.kind {
            JKind::Table { epoch, .. } if !r.stale => Some((epoch.unwrap_or(0), i)),
            _ => None,
        })
        .collect();
    order.sort();
    let hdr = JRecord::table_header(variant);
    for (_, i) in order {
        let r = &mut records[i];
        let JKind::Table { first, count, .. } = r.kind else { continue };
        let Some(from) = (r.offset - at).checked_add(hdr as u64).map(|f| f as usize) else { continue };
        let mut past = 0u64;
        let mut empty = 0u64;
        for k in 0..count as usize {
            let Some(raw) = journal.get(from + 4 * k..from + 4 * k + 4) else { break };
            let v = le32(raw, 0);
            let chunk = first as u64 + k as u64;
            if chunk >= entries {
                past += 1;
                continue;
            }
            if v == EMPTY {
                empty += 1;
                continue;
            }
            let c = (chunk * 4) as usize;
            table[c..c + 4].copy_from_slice(&(v & !DIRTY).to_le_bytes());
        }
        r.applied = true;
        if past > 0 {
            note(r, format!("{} of its entries are for chunks past the end of the table ({} entries): ignored", past, entries));
        }
        if empty > 0 {
            note(r, format!("{} of its entries are 0xFFFFFFFF (empty), which a journal never records: not applied", empty));
        }
    }
}
