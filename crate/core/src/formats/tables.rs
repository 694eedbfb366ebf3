//! Two-level tables (QED, qcow, qcow2): which bytes of which second-level tables a guest
//! range needs, handed to the cache as one coalesced batch it can hold.
use alloc::vec::Vec;

use crate::io::ReadAt;
use crate::limits;

/// The shape of a format's second-level tables.
pub struct Shape {
    /// Guest bytes one table covers.
    pub cover: u64,
    /// Guest bytes one entry covers (the cluster).
    pub unit: u64,
    /// Bytes per entry in the file.
    pub entry: u64,
    /// Bytes of a whole table.
    pub table: u64,
    /// At least this many bytes are read from the first needed entry (capped at the table's
    /// end), so that small requests bring the next ones' entries along.
    pub ahead: u64,
}

/// Prefetch the entries guest `[start, end)` needs; `table(i)` is table i's file offset when
/// it has a valid one. Returns the guest offset the batch reaches (less than `end` when the
/// cache could not hold more): call again from there.
pub fn prefetch(file: &dyn ReadAt, s: &Shape, start: u64, end: u64, table: impl Fn(u64) -> Option<u64>) -> u64 {
    let mut ranges = Vec::new();
    let mut bytes = 0;
    for i in start / s.cover..end.div_ceil(s.cover) {
        let Some(at) = table(i) else { continue };
        let base = i * s.cover;
        let first = start.max(base) - base;
        let last = end.min(base + s.cover) - base;
        let a = first / s.unit * s.entry;
        let b = (last.div_ceil(s.unit) * s.entry).max((a + s.ahead).min(s.table));
        ranges.push((at + a, b - a));
        bytes += b - a;
        if bytes as usize >= limits::SPAN_CACHE_BYTES / 2 {
            file.prefetch(&mut ranges);
            return end.min(base + s.cover);
        }
    }
    file.prefetch(&mut ranges);
    end
}

/// For checks that walk every table in order: when the walk reaches the table at `at` and
/// it is still in `pending` (offset, length ranges in walk order), prefetch it and the
/// following tables, as many as the cache holds, and drop them from `pending`.
pub fn prefetch_pending(file: &dyn ReadAt, pending: &mut Vec<(u64, u64)>, at: u64) {
    let Some(pos) = pending.iter().position(|&(o, _)| o == at) else { return };
    let mut batch: Vec<(u64, u64)> = Vec::new();
    let mut bytes = 0;
    for &rg in &pending[pos..] {
        bytes += rg.1;
        if bytes as usize > limits::SPAN_CACHE_BYTES / 2 && !batch.is_empty() {
            break;
        }
        batch.push(rg);
    }
    let n = batch.len();
    file.prefetch(&mut batch);
    pending.drain(..pos + n);
}
