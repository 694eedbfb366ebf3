//! The VHDX log (MS-VHDX 2.3): a circular buffer of 4 KiB sectors holding entries, each a
//! 64-byte header, 32-byte descriptors ("desc": one 4 KiB sector of data to write, "zero":
//! a run to zero) and the data sectors. Entries whose GUID is the current header's log_guid
//! and whose sequence numbers follow each other form sequences; the sequence that ends with
//! the highest number is the one to replay. We replay it in memory, into an [`Overlay`] of
//! the file, never on the file; QEMU replays it on the file when it opens the image for
//! writing (block/vhdx-log.c) and refuses to open it read-only.
use alloc::{boxed::Box, collections::BTreeMap, format, string::String, sync::Arc, vec, vec::Vec};

use super::structs::crc32c;
use crate::error::Result;
use crate::formats::bytes::{le32, le64, ms_guid};
use crate::io::{read_clipped, table_buf, ReadAt};
use crate::model::Record;

pub const SECTOR: u64 = 4096;
/// Descriptors listed per record; the rest are counted.
const LISTED: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desc {
    /// A 4 KiB sector to write at `file_offset` (leading 8 bytes and trailing 4 from the
    /// descriptor, the middle from the data sector).
    Data { file_offset: u64, page: Box<[u8]> },
    Zero { file_offset: u64, length: u64 },
}

#[derive(Clone, Debug)]
pub struct Entry {
    /// Offset of the entry in the log, and in the file.
    pub pos: u64,
    pub at: u64,
    pub length: u64,
    pub tail: u32,
    pub seq: u64,
    pub guid: [u8; 16],
    pub flushed: u64,
    pub last: u64,
    pub count: u32,
    pub descs: Vec<Desc>,
    /// Why the entry cannot be replayed (None: it can).
    pub problem: Option<String>,
    /// Well formed, but written under another log GUID (an earlier session).
    pub other_guid: bool,
}

#[derive(Default)]
pub struct Log {
    pub offset: u64,
    pub length: u64,
    pub entries: Vec<Entry>,
    /// Indices into `entries` of the sequence to replay, in order.
    pub active: Vec<usize>,
    /// Whether `active` was applied to the overlay.
    pub replayed: bool,
    /// What stops the log from being read or replayed, with the file offset at fault.
    pub problems: Vec<(u64, String)>,
}

/// Bytes `[pos, pos+len)` of the circular log `buf`.
fn circular(buf: &[u8], pos: u64, len: u64) -> Vec<u8> {
    let n = buf.len() as u64;
    let mut out = Vec::with_capacity(len as usize);
    let mut p = pos % n;
    let mut left = len;
    while left > 0 {
        let take = left.min(n - p);
        out.extend_from_slice(&buf[p as usize..(p + take) as usize]);
        left -= take;
        p = (p + take) % n;
    }
    out
}

/// Decode the entry at log position `pos` (its first sector starts "loge").
fn entry(buf: &[u8], pos: u64, log_at: u64, want_guid: &[u8]) -> Entry {
    let head = &buf[pos as usize..pos as usize + 64];
    let mut e = Entry {
        pos,
        at: log_at + pos,
        length: le32(head, 8) as u64,
        tail: le32(head, 12),
        seq: le64(head, 16),
        count: le32(head, 24),
        guid: head[32..48].try_into().expect("16"),
        flushed: le64(head, 48),
        last: le64(head, 56),
        descs: Vec::new(),
        problem: None,
        other_guid: false,
    };
    let log_len = buf.len() as u64;
    let (length, count, seq) = (e.length, e.count, e.seq);
    let fail = |e: &mut Entry, why: String| {
        e.problem.get_or_insert(why);
    };
    if e.length == 0 || !e.length.is_multiple_of(SECTOR) || e.length > log_len {
        fail(&mut e, format!("entry length {} is not a multiple of 4 KiB within the log", length));
        return e;
    }
    if e.seq == 0 {
        fail(&mut e, String::from("sequence number 0 is not allowed"));
    }
    // The 64-byte entry header comes before the descriptors (found by fuzzing, input kept).
    if 64 + e.count as u64 * 32 > e.length {
        fail(&mut e, format!("{} descriptors do not fit in {} bytes", count, length));
        return e;
    }
    let bytes = circular(buf, pos, e.length);
    let stored = le32(&bytes, 4);
    let crc = crc32c(&bytes, 4);
    if crc != stored {
        fail(&mut e, format!("checksum {:#010x} is wrong (CRC-32C {:#010x})", stored, crc));
    }
    let desc_sectors = (e.count as u64 + 2).div_ceil(128);
    let data_count = (0..e.count as usize).filter(|&k| &bytes[64 + 32 * k..68 + 32 * k] == b"desc").count() as u64;
    if (desc_sectors + data_count) * SECTOR > e.length {
        fail(&mut e, format!("{} descriptor sectors and {} data sectors do not fit in {} bytes", desc_sectors, data_count, length));
        return e;
    }
    let mut data_at = desc_sectors * SECTOR;
    for k in 0..e.count as usize {
        let d = &bytes[64 + 32 * k..96 + 32 * k];
        let (sig, file_offset, dseq) = (&d[..4], le64(d, 16), le64(d, 24));
        if dseq != e.seq {
            fail(&mut e, format!("descriptor {} has sequence number {}, not the entry's {}", k, dseq, seq));
        }
        if file_offset % SECTOR != 0 {
            fail(&mut e, format!("descriptor {} writes at {:#x}, not a multiple of 4 KiB", k, file_offset));
        }
        match sig {
            b"zero" => {
                let length = le64(d, 8);
                if !length.is_multiple_of(SECTOR) {
                    fail(&mut e, format!("zero descriptor {} has a length of {} bytes, not a multiple of 4 KiB", k, length));
                }
                e.descs.push(Desc::Zero { file_offset, length });
            }
            b"desc" => {
                let s = &bytes[data_at as usize..(data_at + SECTOR) as usize];
                data_at += SECTOR;
                let sseq = (le32(s, 4) as u64) << 32 | le32(s, 4092) as u64;
                if &s[..4] != b"data" || sseq != e.seq {
                    fail(&mut e, format!("the data sector of descriptor {} is not marked \"data\" with the entry's sequence number", k));
                }
                let mut page = vec![0u8; SECTOR as usize].into_boxed_slice();
                page[..8].copy_from_slice(&d[8..16]);
                page[8..4092].copy_from_slice(&s[8..4092]);
                page[4092..].copy_from_slice(&d[4..8]);
                e.descs.push(Desc::Data { file_offset, page });
            }
            other => {
                fail(&mut e, format!("descriptor {} has signature {:?}", k, String::from_utf8_lossy(other)));
                return e;
            }
        }
    }
    if e.problem.is_none() && e.guid != want_guid {
        e.problem = Some(format!("its log GUID {} is not the header's", ms_guid(&e.guid)));
        e.other_guid = true;
    }
    e
}

impl Log {
    /// Read the log at `offset` (`length` bytes) of `file` and find the sequence to replay
    /// for `log_guid` (all zero: a clean log, nothing to replay).
    pub fn read(file: &dyn ReadAt, offset: u64, length: u64, log_guid: &[u8]) -> Log {
        let mut log = Log { offset, length, ..Log::default() };
        if length == 0 {
            return log;
        }
        if !offset.is_multiple_of(super::structs::MIB) || !length.is_multiple_of(super::structs::MIB) {
            log.problems.push((offset, format!("the log ({} bytes at {:#x}) is not aligned to 1 MiB", length, offset)));
            return log;
        }
        if offset.checked_add(length).is_none_or(|e| e > file.size()) {
            log.problems.push((offset, format!("the log ({} bytes at {:#x}) runs past the end of the file", length, offset)));
            return log;
        }
        let mut buf = match table_buf("VHDX log", length) {
            Ok(b) => b,
            Err(e) => {
                log.problems.push((offset, format!("{}", e)));
                return log;
            }
        };
        if let Err(e) = read_clipped(file, offset, &mut buf) {
            log.problems.push((offset, format!("reading the log failed: {}", e)));
            return log;
        }
        let mut pos = 0;
        while pos < length {
            if &buf[pos as usize..pos as usize + 4] == b"loge" {
                log.entries.push(entry(&buf, pos, offset, log_guid));
            }
            pos += SECTOR;
        }
        if log_guid.iter().any(|&b| b != 0) {
            log.active = active(&log.entries, length);
        }
        log
    }

    /// Apply the active sequence to `overlay`, in order.
    pub fn replay(&mut self, overlay: &mut Overlay) {
        for &i in &self.active {
            let e = &self.entries[i];
            if e.flushed > overlay.base.size() {
                self.problems.push((e.at + 48, format!(
                    "entry {} says the file was at least {} bytes long when it was written, but it has {}: the file was truncated (QEMU refuses it)",
                    e.seq, e.flushed, overlay.base.size())));
            }
            for d in &e.descs {
                match d {
                    Desc::Data { file_offset, page } => overlay.write_page(*file_offset, page.clone()),
                    Desc::Zero { file_offset, length } => overlay.zero(*file_offset, *length),
                }
            }
            overlay.size = overlay.size.max(e.last.saturating_add(super::structs::MIB - 1) / super::structs::MIB * super::structs::MIB);
        }
        self.replayed = !self.active.is_empty();
    }

    pub fn records(&self, dirty: bool) -> Vec<Record> {
        let active: Vec<usize> = self.active.clone();
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let in_active = active.contains(&i);
                let mut fields = vec![
                    (String::from("sequence_number"), format!("{}", e.seq)),
                    (String::from("tail"), format!("{}", e.tail)),
                    (String::from("descriptor_count"), format!("{}", e.count)),
                    (String::from("log_guid"), ms_guid(&e.guid)),
                    (String::from("flushed_file_offset"), format!("{}", e.flushed)),
                    (String::from("last_file_offset"), format!("{}", e.last)),
                ];
                for (k, d) in e.descs.iter().take(LISTED).enumerate() {
                    fields.push((format!("descriptor {}", k), match d {
                        Desc::Data { file_offset, .. } => format!("4096 bytes of data to byte {:#x}", file_offset),
                        Desc::Zero { file_offset, length } => format!("{} zero bytes to byte {:#x}", length, file_offset),
                    }));
                }
                if e.descs.len() > LISTED {
                    fields.push((String::from("more descriptors"), format!("{}", e.descs.len() - LISTED)));
                }
                let note = match (&e.problem, in_active) {
                    (Some(_), _) if e.other_guid && !dirty => String::from("left from an earlier session: the log is empty (log_guid is zero)"),
                    (Some(p), _) => format!("not replayed: {}", p),
                    (None, true) if self.replayed => format!("replayed in memory (entry {} of the active sequence)", 1 + active.iter().position(|&a| a == i).unwrap_or(0)),
                    (None, true) => String::from("part of the sequence to replay; shown as stored, not applied"),
                    (None, false) if !dirty => String::from("left from an earlier session: the log is empty (log_guid is zero)"),
                    (None, false) => String::from("superseded: not part of the sequence ending with the highest sequence number"),
                };
                Record {
                    kind: String::from(if e.problem.is_some() && e.descs.is_empty() && e.count > 0 { "malformed log entry" } else { "log entry" }),
                    offset: e.at,
                    length: e.length.max(SECTOR),
                    fields,
                    note,
                    stale: !in_active,
                    applied: in_active && self.replayed,
                }
            })
            .collect()
    }
}

/// The replayable sequence: the longest run of valid entries, each following the previous
/// in the log with the next sequence number, that ends with the highest sequence number.
fn active(entries: &[Entry], log_len: u64) -> Vec<usize> {
    let valid: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].problem.is_none()).collect();
    let Some(&head) = valid.iter().max_by_key(|&&i| entries[i].seq) else { return Vec::new() };
    let mut seq = vec![head];
    let mut cur = head;
    while seq.len() < valid.len() {
        let want = entries[cur].pos;
        let prev = valid.iter().copied().find(|&j| entries[j].seq.checked_add(1) == Some(entries[cur].seq) && (entries[j].pos + entries[j].length) % log_len == want);
        match prev {
            Some(j) => {
                seq.push(j);
                cur = j;
            }
            None => break,
        }
    }
    seq.reverse();
    // The head's tail names where its sequence starts; honour it when it is in the run.
    if let Some(k) = seq.iter().position(|&j| entries[j].pos == entries[head].tail as u64) {
        seq.drain(..k);
    }
    seq
}

/// The file with the log replayed over it: 4 KiB pages written and runs zeroed, in memory.
pub struct Overlay {
    pub base: Arc<dyn ReadAt>,
    pub size: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Disjoint zeroed runs, start -> end.
    zeros: BTreeMap<u64, u64>,
}

impl Overlay {
    pub fn new(base: Arc<dyn ReadAt>) -> Overlay {
        let size = base.size();
        Overlay { base, size, pages: BTreeMap::new(), zeros: BTreeMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.zeros.is_empty()
    }

    fn unzero(&mut self, a: u64, b: u64) {
        let hit: Vec<(u64, u64)> = self.zeros.range(..b).filter(|(_, &e)| e > a).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in hit {
            self.zeros.remove(&s);
            if s < a {
                self.zeros.insert(s, a);
            }
            if e > b {
                self.zeros.insert(b, e);
            }
        }
    }

    pub fn write_page(&mut self, at: u64, page: Box<[u8]>) {
        let end = at.saturating_add(page.len() as u64);
        self.unzero(at, end);
        self.pages.insert(at, page);
    }

    pub fn zero(&mut self, at: u64, len: u64) {
        let end = at.saturating_add(len);
        let gone: Vec<u64> = self.pages.range(at..end).map(|(&k, _)| k).collect();
        for k in gone {
            self.pages.remove(&k);
        }
        self.unzero(at, end);
        self.zeros.insert(at, end);
    }

    /// Whether any byte of `[a, b)` is patched.
    pub fn touches(&self, a: u64, b: u64) -> bool {
        self.pages.range(a.saturating_sub(SECTOR - 1)..b).next().is_some() || self.zeros.range(..b).any(|(_, &e)| e > a)
    }

    /// The patched sub-ranges of `[a, b)`, in order (adjacent ones merged).
    pub fn patched(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let pages = self.pages.range(a.saturating_sub(SECTOR - 1)..b).map(|(&k, p)| (k, k + p.len() as u64));
        let zeros = self.zeros.range(..b).filter(|(_, &e)| e > a).map(|(&s, &e)| (s, e));
        let mut all: Vec<(u64, u64)> = pages.chain(zeros).map(|(s, e)| (s.max(a), e.min(b))).filter(|(s, e)| s < e).collect();
        all.sort_unstable();
        for (s, e) in all {
            match out.last_mut() {
                Some(last) if last.1 >= s => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        out
    }
}

impl ReadAt for Overlay {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_clipped(&*self.base, offset, buf)?;
        let end = offset + buf.len() as u64;
        for (&s, &e) in self.zeros.range(..end).filter(|(_, &e)| e > offset) {
            let (a, b) = (s.max(offset), e.min(end));
            buf[(a - offset) as usize..(b - offset) as usize].fill(0);
        }
        for (&s, page) in self.pages.range(offset.saturating_sub(SECTOR - 1)..end) {
            let e = s + page.len() as u64;
            let (a, b) = (s.max(offset), e.min(end));
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize].copy_from_slice(&page[(a - s) as usize..(b - s) as usize]);
            }
        }
        Ok(())
    }

    fn prefetch(&self, ranges: &mut [(u64, u64)]) {
        self.base.prefetch(ranges)
    }
}
