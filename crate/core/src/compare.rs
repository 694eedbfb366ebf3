//! Compare the guest contents of two chains, as `qemu-img compare` does (not strict: a
//! size difference is fine if the larger disk's extra bytes are all zero).
use alloc::{vec, vec::Vec};

use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::map::MapEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct Comparison {
    pub identical: bool,
    /// First differing 512-byte sector's offset (qemu-img reports sector-aligned offsets).
    pub mismatch_offset: Option<u64>,
    pub size_a: u64,
    pub size_b: u64,
}

const CHUNK: u64 = 1 << 20;

/// Whether reading `e` may give non-zero bytes (or an error to report).
fn may_differ(e: &MapEntry) -> bool {
    !e.zero || e.invalid.is_some() || e.missing
}

/// Runs of `c` in `[start, end)` that may hold non-zero bytes, as its layers' tables say
/// (host holes inside them are found per chunk, by [`all_holes`]).
pub(crate) fn nonzero_runs(c: &Chain, start: u64, end: u64) -> Result<Vec<MapEntry>> {
    let mut entries = Vec::new();
    c.layer_runs(start, end - start, &mut entries)?;
    entries.retain(may_differ);
    Ok(entries)
}

/// Whether every run of `runs` (sorted, as a map yields them) that meets `[at, end)` is
/// stored data whose host bytes there are holes: then `c` reads zeros there unread.
pub(crate) fn all_holes(c: &Chain, runs: &[MapEntry], at: u64, end: u64) -> Result<bool> {
    let first = runs.partition_point(|e| e.start + e.length <= at);
    for e in runs[first..].iter().take_while(|e| e.start < end) {
        let (a, b) = (e.start.max(at), (e.start + e.length).min(end));
        let part = MapEntry { start: a, length: b - a, offset: e.offset.map(|o| o + (a - e.start)), ..*e };
        let mut stored = false;
        c.host_pieces(&part, |p| {
            stored |= may_differ(&p);
            Ok(())
        })?;
        if stored {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn compare(a: &Chain, b: &Chain, progress: &mut dyn FnMut(u64, u64) -> bool) -> Result<Comparison> {
    let (size_a, size_b) = (a.virtual_size(), b.virtual_size());
    let total = size_a.max(size_b);
    let mut ba = vec![0u8; CHUNK as usize];
    let mut bb = vec![0u8; CHUNK as usize];
    let (steps_a, steps_b) = (a.walk_steps(), b.walk_steps());
    let mut pos = 0;
    while pos < total {
        // A step either side's map can hold; past a disk's end that side has no runs.
        let step = |steps: &dyn Fn(u64) -> u64, size: u64| if pos < size { steps(pos) } else { u64::MAX };
        let end = step(&steps_a, size_a).min(step(&steps_b, size_b)).min(total);
        // Only ranges where either side may be non-zero need reading.
        let runs_a = nonzero_runs(a, pos, end.min(size_a))?;
        let runs_b = if pos < size_b { nonzero_runs(b, pos, end.min(size_b))? } else { Vec::new() };
        let mut ranges: Vec<(u64, u64)> = runs_a.iter().chain(&runs_b).map(|e| (e.start, e.start + e.length)).collect();
        ranges.sort_unstable();
        let mut cursor = pos;
        for (s, e) in ranges {
            let mut at = s.max(cursor);
            while at < e {
                let n = (e - at).min(CHUNK) as usize;
                let to = at + n as u64;
                if !(all_holes(a, &runs_a, at, to)? && all_holes(b, &runs_b, at, to)?) {
                    read_or_zero(a, at, &mut ba[..n])?;
                    read_or_zero(b, at, &mut bb[..n])?;
                    if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
                        let off = (at + i as u64) / 512 * 512;
                        return Ok(Comparison { identical: false, mismatch_offset: Some(off), size_a, size_b });
                    }
                }
                at = to;
                // A step of coarse runs can hold a terabyte of data to read.
                if !progress(at, total) {
                    return Err(Error::Cancelled);
                }
            }
            cursor = cursor.max(e);
        }
        pos = end;
        if !progress(pos, total) {
            return Err(Error::Cancelled);
        }
    }
    Ok(Comparison { identical: true, mismatch_offset: None, size_a, size_b })
}

/// Read what the chain has at `[at, at+buf.len())`; past its end the disk reads as zeros.
fn read_or_zero(c: &Chain, at: u64, buf: &mut [u8]) -> Result<()> {
    let size = c.virtual_size();
    let have = size.saturating_sub(at).min(buf.len() as u64) as usize;
    if have > 0 {
        c.read(at, &mut buf[..have])?;
    }
    buf[have..].fill(0);
    Ok(())
}
