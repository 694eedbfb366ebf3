//! Copy-on-write bitmaps kept beside the data (cow, raw-cow, add-cow, FVD): one bit per
//! `granule` bytes of the guest, least significant bit first. Bytes the file does not have
//! read as zero bits, as QEMU's drivers read them.
use alloc::vec;

use crate::error::Result;
use crate::io::{read_clipped, ReadAt};

/// Bitmap bytes read per step: bounds memory for any disk size.
const CHUNK: u64 = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct CowBitmap {
    /// Byte offset of the first bitmap byte.
    pub offset: u64,
    /// Meaningful bits (granules of the disk).
    pub bits: u64,
    /// Guest bytes per bit.
    pub granule: u64,
}

/// What the host file holds at a bitmap byte, for a walk over the bitmap.
enum Next {
    /// A hole of this many bytes: zero bits, nothing to read.
    Hole(u64),
    /// Read this many bytes (the file's data may end sooner than the walk wants).
    Read(u64),
}

/// How many of `bytes` from the first on equal `b` (at least one: the first does).
fn same_bytes(bytes: &[u8], b: u8) -> usize {
    let word = u64::from_ne_bytes([b; 8]);
    let words = bytes.chunks_exact(8).take_while(|c| <[u8; 8]>::try_from(*c).is_ok_and(|w| u64::from_ne_bytes(w) == word)).count();
    (words * 8 + bytes[words * 8..].iter().take_while(|&&x| x == b).count()).max(1)
}

impl CowBitmap {
    /// The next stretch of bitmap bytes from byte `at`, `left` more wanted, at most `max` in
    /// one read. Holes in a sparse host file are skipped, not read: a header claiming a
    /// petabyte disk, in a sparse file, had terabytes of zero bytes to scan.
    fn next(&self, file: &dyn ReadAt, at: u64, left: u64, max: u64) -> Next {
        match file.allocation(self.offset + at, left) {
            Some((false, hole)) if hole > 0 => Next::Hole(hole),
            Some((true, data)) => Next::Read(max.min(data.max(1))),
            _ => Next::Read(max),
        }
    }

    /// Bytes the bitmap needs.
    pub fn bytes(&self) -> u64 {
        self.bits.div_ceil(8)
    }

    /// Calls `f(start, end, bit)` for each run of equal bits over guest `[start, end)`,
    /// with the run clipped to that range.
    pub fn runs(&self, file: &dyn ReadAt, start: u64, end: u64, mut f: impl FnMut(u64, u64, bool)) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let (first, last) = (start / self.granule, (end - 1) / self.granule);
        let stored = file.size().saturating_sub(self.offset);
        // No larger than the stored bytes in range: a walk maps past the end step by step.
        let mut buf = vec![0u8; CHUNK.min(last / 8 - first / 8 + 1).min(stored.saturating_sub(first / 8)) as usize];
        // The open run: its first granule and its bit.
        let mut run: Option<(u64, bool)> = None;
        let mut step = |g: u64, bit: bool, f: &mut dyn FnMut(u64, u64, bool)| match run {
            Some((_, v)) if v == bit => {}
            _ => {
                if let Some((s, v)) = run.replace((g, bit)) {
                    f((s * self.granule).max(start), g * self.granule, v);
                }
            }
        };
        let mut byte = first / 8;
        while byte <= last / 8 {
            if byte >= stored {
                // Past the file's end every bit is 0: one step, however large the disk claims to be.
                step((byte * 8).max(first), false, &mut f);
                break;
            }
            let max = (buf.len() as u64).min(last / 8 - byte + 1).min(stored - byte);
            let n = match self.next(file, byte, last / 8 - byte + 1, max) {
                Next::Hole(hole) => {
                    step((byte * 8).max(first), false, &mut f);
                    byte += hole;
                    continue;
                }
                Next::Read(n) => n as usize,
            };
            read_clipped(file, self.offset + byte, &mut buf[..n])?;
            // Bytes before this index have all eight bits within the range.
            let whole = ((last + 1) / 8).saturating_sub(byte).min(n as u64) as usize;
            let mut i = 0;
            while i < n {
                let (b, base) = (buf[i], (byte + i as u64) * 8);
                if (b == 0 || b == 0xff) && base >= first && i < whole {
                    // Whole bytes of one value: one step for the stretch, compared a word
                    // at a time (a clear bitmap of 40 MB took the fuzzer 10 s a byte at a time).
                    step(base, b == 0xff, &mut f);
                    i += same_bytes(&buf[i..whole], b);
                    continue;
                }
                for g in base.max(first)..(base + 8).min(last + 1) {
                    step(g, b >> (g - base) & 1 == 1, &mut f);
                }
                i += 1;
            }
            byte += n as u64;
        }
        if let Some((s, v)) = run {
            f((s * self.granule).max(start), end, v);
        }
        Ok(())
    }

    /// Where a walk from guest `pos` may end a step having had at most `runs` runs of this
    /// bitmap ([`Image::runs_end`](crate::Image::runs_end)): a hole in the host file, or
    /// the bitmap past the file's end, is one run of clear bits; a stored byte up to eight.
    /// Where the host cannot tell holes (the browser), every byte counts as stored.
    pub fn runs_end(&self, file: &dyn ReadAt, pos: u64, runs: u64) -> u64 {
        let stored = file.size().saturating_sub(self.offset).min(self.bytes());
        let first = pos / self.granule / 8;
        let (mut byte, mut left) = (first, runs);
        while byte < stored {
            match self.next(file, byte, stored - byte, u64::MAX) {
                Next::Hole(hole) if left > 0 => (byte, left) = (byte.saturating_add(hole), left - 1),
                Next::Read(n) if left >= 8 => {
                    let k = n.min(left / 8).min(stored - byte);
                    (byte, left) = (byte + k, left - 8 * k);
                }
                _ => break,
            }
        }
        if byte >= stored {
            u64::MAX
        } else if byte == first {
            pos.saturating_add(runs.saturating_mul(self.granule))
        } else {
            byte.saturating_mul(8).saturating_mul(self.granule)
        }
    }

    /// The bitmap byte holding guest byte `guest`'s bit, as a field saying what the bit
    /// means (`set`: where a set bit sends the read; `clear`: where a clear one does).
    pub fn field(&self, file: &dyn ReadAt, guest: u64, set: &str, clear: &str) -> Result<Option<crate::model::Field>> {
        let bit = guest / self.granule;
        if bit >= self.bits {
            return Ok(None);
        }
        let at = self.offset + bit / 8;
        let mut b = [0u8; 1];
        if at < file.size() {
            read_clipped(file, at, &mut b)?;
        }
        let on = b[0] >> (bit % 8) & 1 == 1;
        Ok(Some(crate::model::Field {
            name: alloc::format!("bitmap bit {}", bit),
            offset: at,
            size: 1,
            raw: b.to_vec(),
            value: alloc::format!("{}: {}", if on { "set" } else { "clear" }, if on { set } else { clear }),
            note: alloc::format!("bit {} of this byte (least significant first); one bit per {} guest bytes", bit % 8, self.granule),
        }))
    }

    /// Bits set among the meaningful bits, and whether any bit past them is set
    /// (in the last byte: the only place such bits can be without being outside the bitmap).
    pub fn count(&self, file: &dyn ReadAt) -> Result<(u64, bool)> {
        let mut set = 0u64;
        let mut buf = vec![0u8; CHUNK.min(self.bytes().max(1)) as usize];
        let mut at = 0;
        // Bytes past the file's end are zero bits: nothing to count there.
        let total = self.bytes().min(file.size().saturating_sub(self.offset));
        let mut tail_set = false;
        while at < total {
            let n = match self.next(file, at, total - at, (buf.len() as u64).min(total - at)) {
                Next::Hole(hole) => {
                    at += hole;
                    continue;
                }
                Next::Read(n) => n as usize,
            };
            read_clipped(file, self.offset + at, &mut buf[..n])?;
            if at + n as u64 == self.bytes() && self.bits % 8 != 0 {
                let used = (self.bits % 8) as u32;
                tail_set = buf[n - 1] >> used != 0;
                buf[n - 1] &= (1u8 << used) - 1;
            }
            // A word at a time: a clear bitmap of 40 MB took the fuzzer 40 s a byte at a time.
            set += buf[..n].chunks(8).map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w).count_ones() as u64
            }).sum::<u64>();
            at += n as u64;
        }
        Ok((set, tail_set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFile;
    use alloc::vec::Vec;

    #[test]
    fn holes_in_the_file_are_zero_bits_and_not_read() {
        // A 1 TiB bitmap (a 4 PiB disk of sectors) with two bytes stored, far apart.
        let mut f = crate::io::SparseFile { size: 4096 + (1 << 40), chunks: Vec::new() };
        f.poke(4096 + 3, &[0b1000_0001]);
        f.poke(4096 + (1 << 39), &[0xff]);
        let bm = CowBitmap { offset: 4096, bits: 8 << 40, granule: 512 };
        let file = crate::testutil::Counted(f, core::cell::Cell::new(0));
        let mut got = Vec::new();
        bm.runs(&file, 0, (8 << 40) * 512, |a, b, v| got.push((a / 512, b / 512, v))).unwrap();
        let t = 4u64 << 40; // bit index of byte 2^39
        assert_eq!(got, vec![(0, 24, false), (24, 25, true), (25, 31, false), (31, 32, true), (32, t, false), (t, t + 8, true), (t + 8, 8 << 40, false)]);
        // The host stores whole 4 KiB blocks: the two that hold those bytes are all that is read.
        assert!(file.1.get() <= 8192, "{} bytes read", file.1.get());
        file.1.set(0);
        assert_eq!(bm.count(&file).unwrap(), (10, false));
        assert!(file.1.get() <= 8192, "{} bytes read to count", file.1.get());
        // A walk's step: a hole is one run, a stored byte eight (a block of them 32,768),
        // the rest of the bitmap one.
        let walk = |runs| bm.runs_end(&file, 0, runs);
        assert_eq!(walk(32768 + 1), (1 << 39) * 8 * 512, "block, hole: the runs reach the second block");
        assert_eq!(walk(32768), 4096 * 8 * 512, "the hole after the first block does not fit");
        assert_eq!(walk(2 * 32768 + 2), u64::MAX, "the rest is clear bits to the end");
        assert_eq!(bm.runs_end(&file, (4 << 40) * 512, 1), (4 << 40) * 512 + 512, "a stored byte dearer than the budget: runs sectors");
        // Where holes are unknown (the browser), every byte is stored: eight runs each.
        let plain = MemFile(vec![0; 4096 + 1000]);
        let bm = CowBitmap { offset: 4096, bits: 8000, granule: 512 };
        assert_eq!(bm.runs_end(&plain, 0, 80), 10 * 8 * 512);
        assert_eq!(bm.runs_end(&plain, 0, 8000), u64::MAX);
    }

    /// Runs match the bits one at a time, for long stretches of one value (compared a word
    /// at a time) cut anywhere by the range.
    #[test]
    fn runs_match_the_bits_over_any_range() {
        let mut bytes = vec![0u8; 3];
        bytes.extend([0xff; 37]);
        bytes.extend([0x00; 29]);
        bytes.extend([0x0f, 0xff, 0xff, 0x80, 0x00, 0x00, 0x01]);
        bytes.extend([0xff; 17]);
        let f = MemFile(bytes.clone());
        let bm = CowBitmap { offset: 3, bits: (bytes.len() as u64 - 3) * 8, granule: 512 };
        let bit = |g: u64| bytes[3 + (g / 8) as usize] >> (g % 8) & 1 == 1;
        for (a, b) in [(0, bm.bits), (5, 300), (7, 8), (8, 296), (9, 311), (290, bm.bits - 3), (301, 302)] {
            let mut want: Vec<(u64, u64, bool)> = Vec::new();
            for g in a..b {
                match want.last_mut() {
                    Some(r) if r.2 == bit(g) => r.1 = g + 1,
                    _ => want.push((g, g + 1, bit(g))),
                }
            }
            let mut got = Vec::new();
            bm.runs(&f, a * 512, b * 512, |s, e, v| got.push((s / 512, e / 512, v))).unwrap();
            assert_eq!(got, want, "bits {}..{}", a, b);
        }
        assert_eq!((same_bytes(&[7; 20], 7), same_bytes(&[7, 7, 1], 7), same_bytes(&[0; 8], 0)), (20, 2, 8));
    }

    #[test]
    fn runs_follow_bits_lsb_first_and_clip_to_the_range() {
        // bits: 0b0000_0110 then 0xff then 0x00 -> granules 1,2 set; 8..15 set
        let f = MemFile(vec![9, 0b0000_0110, 0xff, 0x00]);
        let bm = CowBitmap { offset: 1, bits: 24, granule: 512 };
        let mut got = Vec::new();
        bm.runs(&f, 0, 24 * 512, |a, b, v| got.push((a / 512, b / 512, v))).unwrap();
        assert_eq!(got, vec![(0, 1, false), (1, 3, true), (3, 8, false), (8, 16, true), (16, 24, false)]);
        got.clear();
        bm.runs(&f, 700, 9 * 512 + 1, |a, b, v| got.push((a, b, v))).unwrap();
        assert_eq!(got, vec![(700, 1536, true), (1536, 4096, false), (4096, 4609, true)]);
        assert_eq!(bm.count(&f).unwrap(), (10, false));
    }

    #[test]
    fn a_bitmap_claiming_far_more_than_the_file_holds_is_walked_in_one_step() {
        // 2^50 bits of 512 bytes (half an exabyte) over a 2-byte file: must not read or
        // clear buffers for the missing petabytes.
        let f = MemFile(vec![0b1, 0]);
        let bm = CowBitmap { offset: 0, bits: 1 << 50, granule: 512 };
        let mut got = Vec::new();
        bm.runs(&f, 0, (1u64 << 50) * 512, |a, b, v| got.push((a, b, v))).unwrap();
        assert_eq!(got, vec![(0, 512, true), (512, (1u64 << 50) * 512, false)]);
        assert_eq!(bm.count(&f).unwrap(), (1, false));
    }

    #[test]
    fn missing_bytes_are_zero_bits_and_stray_tail_bits_are_seen() {
        let f = MemFile(vec![0xff]);
        let bm = CowBitmap { offset: 0, bits: 5, granule: 1 };
        assert_eq!(bm.count(&f).unwrap(), (5, true));
        let short = CowBitmap { offset: 0, bits: 16, granule: 1 };
        let mut got = Vec::new();
        short.runs(&f, 0, 16, |a, b, v| got.push((a, b, v))).unwrap();
        assert_eq!(got, vec![(0, 8, true), (8, 16, false)]);
    }
}
