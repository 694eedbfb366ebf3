//! The only way bytes come in: a synchronous positioned read.
//!
//! Natively this is `pread` on a file; in the browser it is `FileReaderSync` over
//! `File.slice` in a worker, where every call costs about 1.5 ms whatever its size
//! (shared/research/webspike.md). So formats tell the cache what they will need
//! ([`ReadAt::prefetch`]) and [`CachedFile`] turns that into few, large reads.
use alloc::collections::{BTreeMap, VecDeque};
use alloc::{sync::Arc, vec, vec::Vec};
use core::cell::RefCell;

use crate::error::{Error, Result};
use crate::limits;

/// A file that can be read at any offset.
pub trait ReadAt {
    /// Length of the file in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`. Callers never ask past [`size`](Self::size): use
    /// [`read_exact_at`] or [`read_clipped`], which check first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Whether the host has bytes stored at `offset` (`Some((true, n))`: the next `n` bytes
    /// are data; `Some((false, n))`: a hole that reads as zeros). `None` where the platform
    /// cannot tell (the browser), which callers treat as data.
    fn allocation(&self, _offset: u64, _len: u64) -> Option<(bool, u64)> {
        None
    }
    /// A hint: these ranges will be read soon. Caching layers read them coalesced.
    fn prefetch(&self, _ranges: &mut [(u64, u64)]) {}
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        (**self).allocation(offset, len)
    }
    fn prefetch(&self, ranges: &mut [(u64, u64)]) {
        (**self).prefetch(ranges)
    }
}

/// Read exactly `buf.len()` bytes at `offset`, or say which structure ran past the end.
pub fn read_exact_at(f: &dyn ReadAt, offset: u64, buf: &mut [u8], what: &'static str) -> Result<()> {
    let len = buf.len() as u64;
    let size = f.size();
    match offset.checked_add(len) {
        Some(end) if end <= size => f.read_at(offset, buf),
        _ => Err(Error::PastEnd { what, offset, len, file_size: size }),
    }
}

/// Read what exists of `[offset, offset+len)` and zero the rest (a sparse file's tail,
/// a backing file shorter than its overlay).
pub fn read_clipped(f: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> Result<()> {
    let size = f.size();
    let avail = size.saturating_sub(offset).min(buf.len() as u64) as usize;
    if avail > 0 {
        f.read_at(offset, &mut buf[..avail])?;
    }
    buf[avail..].fill(0);
    Ok(())
}

/// Allocate a buffer for a metadata structure whose size came from a header.
pub fn table_buf(what: &'static str, len: u64) -> Result<Vec<u8>> {
    if len > limits::MAX_TABLE_BYTES {
        return Err(Error::Limit { what, needed: len, limit: limits::MAX_TABLE_BYTES });
    }
    Ok(vec![0u8; len as usize])
}

/// Read a table of `count` entries of `width` bytes at `offset`, each decoded by `decode`,
/// a MiB at a time, so a table at the limit is held once (as entries), never twice (as
/// bytes and as entries). `exact`: a table running past the end of the file is an error
/// naming `what`; otherwise what is past the end reads as zeros (QEMU's reads past the end).
pub fn read_entries<T>(
    f: &dyn ReadAt,
    what: &'static str,
    offset: u64,
    count: u64,
    width: usize,
    exact: bool,
    decode: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>> {
    let len = count.saturating_mul(width as u64);
    let held = count.saturating_mul(core::mem::size_of::<T>().max(width) as u64);
    if held > limits::MAX_TABLE_BYTES {
        return Err(Error::Limit { what, needed: held, limit: limits::MAX_TABLE_BYTES });
    }
    if exact && offset.checked_add(len).is_none_or(|end| end > f.size()) {
        return Err(Error::PastEnd { what, offset, len, file_size: f.size() });
    }
    let mut out = Vec::with_capacity(count as usize);
    let step = (1 << 20) / width * width;
    let mut chunk = vec![0u8; len.min(step as u64) as usize];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(chunk.len() as u64) as usize;
        read_clipped(f, offset.saturating_add(at), &mut chunk[..n])?;
        out.extend(chunk[..n].chunks_exact(width).map(&decode));
        at += n as u64;
    }
    Ok(out)
}

/// Big-endian u64 entries (qcow2 and qcow tables), past the end reading as zeros.
pub fn read_be64_table(f: &dyn ReadAt, what: &'static str, offset: u64, count: u64) -> Result<Vec<u64>> {
    read_entries(f, what, offset, count, 8, false, |c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
}

/// A file plus a bounded cache of the ranges `prefetch` was told about. Nearby ranges are
/// read together in one large read (each read costs ~1.5 ms in a browser), but only the
/// ranges asked for are kept, not the bytes between them (data clusters between tables), so
/// the budget holds the metadata itself and later passes over the same tables (check, then
/// map, then export plan) find it instead of reading it all again.
/// Reads that fall inside a kept range are served from memory; all others go through.
pub struct CachedFile {
    inner: Arc<dyn ReadAt>,
    spans: RefCell<Spans>,
}

/// Kept ranges by start offset, and their insertion order for eviction (oldest first).
/// No kept range lies inside another, so ends grow with starts and the range with the
/// greatest start at or before an offset is the only one that can cover it.
#[derive(Default)]
struct Spans {
    by_start: BTreeMap<u64, Span>,
    order: VecDeque<u64>,
    /// What the kept spans cost in memory, held under [`limits::SPAN_CACHE_BYTES`].
    bytes: usize,
}

/// Pages of a kept range are stored only when they hold a non-zero byte: the tables of a
/// large sparse disk are mostly zeros (a 256 GiB QED with 64 KiB in every GiB has 32 MiB of
/// L2 tables with one entry in each), and held whole they would not fit the budget, so
/// every pass over them (check, map, plan) would read them all again.
const PAGE: usize = 4096;

struct Span {
    len: usize,
    pages: Vec<Option<Vec<u8>>>,
}

impl Span {
    fn new(bytes: &[u8]) -> Span {
        let pages = bytes.chunks(PAGE).map(|c| c.iter().any(|&b| b != 0).then(|| c.to_vec())).collect();
        Span { len: bytes.len(), pages }
    }

    fn cost(&self) -> usize {
        self.pages.len() * core::mem::size_of::<Option<Vec<u8>>>() + self.pages.iter().flatten().map(Vec::len).sum::<usize>()
    }

    /// `buf.len()` bytes from `at` (the caller checked they lie inside).
    fn copy_to(&self, at: usize, buf: &mut [u8]) {
        let mut pos = 0;
        while pos < buf.len() {
            let (page, within) = ((at + pos) / PAGE, (at + pos) % PAGE);
            let n = (PAGE - within).min(buf.len() - pos);
            match &self.pages[page] {
                Some(p) => buf[pos..pos + n].copy_from_slice(&p[within..within + n]),
                None => buf[pos..pos + n].fill(0),
            }
            pos += n;
        }
    }
}

impl Spans {
    fn covering(&self, offset: u64, len: u64) -> Option<(u64, &Span)> {
        let (start, span) = self.by_start.range(..=offset).next_back()?;
        let end = offset.checked_add(len)?;
        (end <= start + span.len as u64).then_some((*start, span))
    }

    fn remove(&mut self, start: u64) {
        if let Some(b) = self.by_start.remove(&start) {
            self.bytes -= b.cost();
            self.order.retain(|&s| s != start);
        }
    }

    fn insert(&mut self, start: u64, bytes: &[u8]) {
        let end = start + bytes.len() as u64;
        if self.covering(start, bytes.len() as u64).is_some() {
            return;
        }
        let inside: Vec<u64> = self.by_start.range(start..end).filter(|(s, b)| **s + b.len as u64 <= end).map(|(s, _)| *s).collect();
        for s in inside {
            self.remove(s);
        }
        let span = Span::new(bytes);
        let cost = span.cost();
        while self.bytes + cost > limits::SPAN_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(b) = self.by_start.remove(&old) {
                self.bytes -= b.cost();
            }
        }
        self.bytes += cost;
        self.by_start.insert(start, span);
        self.order.push_back(start);
    }
}

impl CachedFile {
    pub fn new(inner: Arc<dyn ReadAt>) -> Self {
        CachedFile { inner, spans: RefCell::new(Spans::default()) }
    }
}

impl ReadAt for CachedFile {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if let Some((start, span)) = self.spans.borrow().covering(offset, buf.len() as u64) {
            span.copy_to((offset - start) as usize, buf);
            return Ok(());
        }
        self.inner.read_at(offset, buf)
    }

    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        self.inner.allocation(offset, len)
    }

    fn prefetch(&self, ranges: &mut [(u64, u64)]) {
        let size = self.size();
        ranges.sort_unstable();
        // The wanted ranges not cached yet, overlapping or touching ones joined into pieces.
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        {
            let spans = self.spans.borrow();
            for &(off, len) in ranges.iter() {
                let end = match off.checked_add(len) {
                    Some(e) if e <= size && len > 0 => e,
                    _ => continue, // out-of-file ranges are the format's to report, not ours
                };
                if spans.covering(off, len).is_some() {
                    continue;
                }
                match pieces.last_mut() {
                    Some((_, e)) if off <= *e => *e = (*e).max(end),
                    _ => pieces.push((off, end)),
                }
            }
        }
        // Pieces close together are read in one go, then kept apart.
        let mut i = 0;
        while i < pieces.len() {
            let (s, mut e) = pieces[i];
            let mut j = i + 1;
            while j < pieces.len() && pieces[j].0 <= e + limits::COALESCE_GAP && pieces[j].1 - s <= limits::MAX_COALESCED_READ {
                e = pieces[j].1;
                j += 1;
            }
            let wanted: usize = pieces[i..j].iter().map(|(a, b)| (b - a) as usize).sum();
            if wanted <= limits::SPAN_CACHE_BYTES {
                let mut bytes = vec![0u8; (e - s) as usize];
                // A failed prefetch is not an error: the real read will fail and say where.
                if self.inner.read_at(s, &mut bytes).is_ok() {
                    let mut spans = self.spans.borrow_mut();
                    for &(a, b) in &pieces[i..j] {
                        spans.insert(a, &bytes[(a - s) as usize..(b - s) as usize]);
                    }
                }
            }
            i = j;
        }
    }
}

/// What one open has read so far, shared by every file it reads; the open's time limit
/// ([`limits::MAX_OPEN_READS`], [`limits::MAX_OPEN_BYTES`]). Disarmed once the open is done:
/// maps, checks and exports read as much as the disk needs.
#[derive(Default)]
pub struct OpenBudget {
    reads: core::cell::Cell<u64>,
    bytes: core::cell::Cell<u64>,
    done: core::cell::Cell<bool>,
}

impl OpenBudget {
    pub fn finish(&self) {
        self.done.set(true);
    }

    fn spend(&self, len: u64) -> Result<()> {
        if self.done.get() {
            return Ok(());
        }
        let (reads, bytes) = (self.reads.get() + 1, self.bytes.get().saturating_add(len));
        self.reads.set(reads);
        self.bytes.set(bytes);
        if reads > limits::MAX_OPEN_READS {
            return Err(Error::Limit { what: "reads while opening one image (MAX_OPEN_READS)", needed: reads, limit: limits::MAX_OPEN_READS });
        }
        if bytes > limits::MAX_OPEN_BYTES {
            return Err(Error::Limit { what: "bytes read while opening one image (MAX_OPEN_BYTES)", needed: bytes, limit: limits::MAX_OPEN_BYTES });
        }
        Ok(())
    }
}

/// A file whose reads are charged to an open's [`OpenBudget`].
pub struct Metered {
    inner: Arc<dyn ReadAt>,
    budget: alloc::rc::Rc<OpenBudget>,
}

impl Metered {
    pub fn new(inner: Arc<dyn ReadAt>, budget: &alloc::rc::Rc<OpenBudget>) -> Self {
        Metered { inner, budget: budget.clone() }
    }
}

impl ReadAt for Metered {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.budget.spend(buf.len() as u64)?;
        self.inner.read_at(offset, buf)
    }
    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        self.inner.allocation(offset, len)
    }
    fn prefetch(&self, ranges: &mut [(u64, u64)]) {
        self.inner.prefetch(ranges)
    }
}

/// An in-memory file: fixtures, demos, tests.
pub struct MemFile(pub Vec<u8>);

impl ReadAt for MemFile {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).ok().filter(|s| s.checked_add(buf.len()).is_some_and(|e| e <= self.0.len()));
        match start {
            Some(s) => {
                buf.copy_from_slice(&self.0[s..s + buf.len()]);
                Ok(())
            }
            None => Err(Error::PastEnd { what: "read", offset, len: buf.len() as u64, file_size: self.size() }),
        }
    }
}

/// A file of `size` bytes that reads as zeros but for `chunks` (later chunks win where they
/// overlap): images of MiBs that are mostly zeros (GOW's fixed tables, VHDX's regions) held
/// in the few bytes that matter, for the tests' writers and the fuzz targets' inputs.
#[derive(Clone, Default)]
pub struct SparseFile {
    pub size: u64,
    pub chunks: Vec<(u64, Vec<u8>)>,
}

impl SparseFile {
    /// How a fuzz input or seed says it is a sparse file: this, the size (u64 LE), then
    /// chunks of offset (u64 LE), length (u16 LE) and that many bytes.
    pub const MAGIC: &'static [u8] = b"SPARSE\n";
    /// Chunks taken from one input: each read walks them all.
    const MAX_CHUNKS: usize = 4096;

    pub fn poke(&mut self, at: u64, bytes: &[u8]) {
        self.chunks.push((at, bytes.to_vec()));
    }

    /// The file an input in the form [`MAGIC`](Self::MAGIC) describes, or `None` if it is
    /// not in that form. A last chunk cut short keeps the bytes that are there.
    pub fn decode(input: &[u8]) -> Option<SparseFile> {
        let rest = input.strip_prefix(Self::MAGIC)?;
        let (size, mut rest) = rest.split_first_chunk::<8>()?;
        let mut f = SparseFile { size: u64::from_le_bytes(*size), chunks: Vec::new() };
        while f.chunks.len() < Self::MAX_CHUNKS {
            let Some((head, tail)) = rest.split_first_chunk::<10>() else { break };
            let at = u64::from_le_bytes([head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7]]);
            let n = (u16::from_le_bytes([head[8], head[9]]) as usize).min(tail.len());
            f.chunks.push((at, tail[..n].to_vec()));
            rest = &tail[n..];
        }
        Some(f)
    }

    /// `bytes` in the form [`decode`](Self::decode) reads: its non-zero runs (gaps under
    /// 64 bytes kept) as chunks.
    pub fn encode(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::from(Self::MAGIC);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        let mut at = 0;
        while at < bytes.len() {
            let Some(start) = bytes[at..].iter().position(|&b| b != 0).map(|i| at + i) else { break };
            let (mut end, mut zeros) = (start, 0);
            while end < bytes.len() && end - start < u16::MAX as usize && zeros < 64 {
                zeros = if bytes[end] == 0 { zeros + 1 } else { 0 };
                end += 1;
            }
            let end = end - zeros;
            out.extend_from_slice(&(start as u64).to_le_bytes());
            out.extend_from_slice(&((end - start) as u16).to_le_bytes());
            out.extend_from_slice(&bytes[start..end]);
            at = end;
        }
        out
    }

    /// The file's bytes, written out (tests and samples: the size must fit in memory).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.size as usize];
        for (at, bytes) in &self.chunks {
            let a = (*at).min(self.size) as usize;
            let b = (a + bytes.len()).min(out.len());
            out[a..b].copy_from_slice(&bytes[..b - a]);
        }
        out
    }
}

impl ReadAt for SparseFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.size);
        let Some(end) = end else {
            return Err(Error::PastEnd { what: "read", offset, len: buf.len() as u64, file_size: self.size });
        };
        buf.fill(0);
        for (at, bytes) in &self.chunks {
            let (a, b) = ((*at).max(offset), at.saturating_add(bytes.len() as u64).min(end));
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize].copy_from_slice(&bytes[(a - at) as usize..(b - at) as usize]);
            }
        }
        Ok(())
    }
    /// Its chunks are data and the rest are holes, in whole 4 KiB blocks, as a sparse host
    /// file reports them: a header claiming terabytes in a fuzz input then costs what it
    /// would natively, and no more (byte-sized holes split one run into thousands).
    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        const BLOCK: u64 = 4096;
        if offset >= self.size {
            return Some((false, len)); // as SEEK_DATA says past the end: a hole
        }
        let end = offset.saturating_add(len).min(self.size);
        let mut next = end;
        for (at, bytes) in self.chunks.iter().filter(|(_, b)| !b.is_empty()) {
            let (a, b) = (at / BLOCK * BLOCK, at.saturating_add(bytes.len() as u64).saturating_add(BLOCK - 1) / BLOCK * BLOCK);
            if a <= offset && offset < b {
                return Some((true, b.min(end).saturating_sub(offset)));
            }
            if a > offset {
                next = next.min(a);
            }
        }
        Some((false, next.saturating_sub(offset)))
    }
}

/// The file as the format sees it, without the host's hole information: for formats whose
/// QEMU driver reports allocated blocks as data whatever the host file holds under them
/// (no BDRV_BLOCK_RECURSE), so our map says "data" where qemu-img map does.
pub struct NoHoles(pub Arc<dyn ReadAt>);

impl ReadAt for NoHoles {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read_at(offset, buf)
    }
    fn prefetch(&self, ranges: &mut [(u64, u64)]) {
        self.0.prefetch(ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn sparse_form_reads_back_and_takes_any_bytes() {
        let mut bytes = vec![0u8; 300_000];
        bytes[5] = 1;
        bytes[100..200].fill(7);
        bytes[230] = 9; // under 64 zeros after the run above: the same chunk
        bytes[200_000..270_000].fill(3); // longer than one chunk can hold
        bytes[299_999] = 4;
        let form = SparseFile::encode(&bytes);
        assert!(form.len() < 71_000, "{}", form.len());
        let f = SparseFile::decode(&form).unwrap();
        assert_eq!((f.size, f.chunks.len()), (300_000, 5));
        assert!(f.to_bytes() == bytes);
        let mut buf = vec![0u8; 1000];
        f.read_at(199_500, &mut buf).unwrap();
        assert_eq!(buf[..], bytes[199_500..200_500]);
        assert!(matches!(f.read_at(299_500, &mut buf), Err(Error::PastEnd { offset: 299_500, .. })));
        // Its holes, in whole 4 KiB blocks as a host has them; past its end, all hole.
        assert_eq!(f.allocation(0, 1 << 20), Some((true, 4096)), "the block of byte 5");
        assert_eq!(f.allocation(5000, 1 << 20), Some((false, 196_608 - 5000)));
        assert_eq!(f.allocation(300_000, 1 << 40), Some((false, 1 << 40)));
        // Not the form; the form cut anywhere, or claiming a size near 2^64: a file or None.
        assert!(SparseFile::decode(b"QFI\xfb").is_none());
        for cut in 0..40 {
            if let Some(f) = SparseFile::decode(&form[..cut]) {
                let _ = f.read_at(0, &mut buf);
            }
        }
        let mut huge = Vec::from(SparseFile::MAGIC);
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        huge.extend_from_slice(&(u64::MAX - 1).to_le_bytes());
        huge.extend_from_slice(&[5, 0, 1, 2]);
        let f = SparseFile::decode(&huge).unwrap();
        assert_eq!(f.chunks, vec![(u64::MAX - 1, vec![1, 2])]);
        f.read_at(u64::MAX - 3, &mut buf[..3]).unwrap();
        assert_eq!(buf[..3], [0, 0, 1]); // the chunk's last byte would lie past 2^64 - 1
    }

    struct Counting(MemFile, Cell<usize>);
    impl ReadAt for Counting {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_at(&self, o: u64, b: &mut [u8]) -> Result<()> {
            self.1.set(self.1.get() + 1);
            self.0.read_at(o, b)
        }
    }

    #[test]
    fn an_open_stops_at_its_read_and_byte_budgets_and_not_after() {
        let budget = alloc::rc::Rc::new(OpenBudget::default());
        let f = Metered::new(Arc::new(MemFile(vec![7u8; 4096])), &budget);
        let mut b = [0u8; 1];
        for _ in 0..limits::MAX_OPEN_READS {
            f.read_at(0, &mut b).unwrap();
        }
        let err = f.read_at(0, &mut b).unwrap_err();
        assert_eq!(err, Error::Limit { what: "reads while opening one image (MAX_OPEN_READS)", needed: limits::MAX_OPEN_READS + 1, limit: limits::MAX_OPEN_READS });
        budget.finish();
        f.read_at(0, &mut b).unwrap();

        let budget = alloc::rc::Rc::new(OpenBudget::default());
        let f = Metered::new(Arc::new(MemFile(vec![7u8; 1 << 20])), &budget);
        let mut big = vec![0u8; 1 << 20];
        let reads = limits::MAX_OPEN_BYTES >> 20;
        for _ in 0..reads {
            f.read_at(0, &mut big).unwrap();
        }
        let err = f.read_at(0, &mut big).unwrap_err();
        assert_eq!(err, Error::Limit { what: "bytes read while opening one image (MAX_OPEN_BYTES)", needed: (reads + 1) << 20, limit: limits::MAX_OPEN_BYTES });
    }

    #[test]
    fn prefetch_coalesces_nearby_ranges_into_one_read() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let inner = Arc::new(Counting(MemFile(data.clone()), Cell::new(0)));
        let f = CachedFile::new(inner.clone());
        f.prefetch(&mut [(500_000, 100), (1000, 100), (200_000, 100)]);
        assert_eq!(inner.1.get(), 2, "ranges within the gap merge, the far one stays apart");
        let mut b = [0u8; 100];
        f.read_at(200_000, &mut b).unwrap();
        assert_eq!(&b[..], &data[200_000..200_100]);
        assert_eq!(inner.1.get(), 2, "served from the span");
        f.read_at(900_000, &mut b).unwrap();
        assert_eq!(inner.1.get(), 3, "outside every span: read through");
    }

    #[test]
    fn prefetch_keeps_the_ranges_asked_for_not_the_gaps_between() {
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let inner = Arc::new(Counting(MemFile(data.clone()), Cell::new(0)));
        let f = CachedFile::new(inner.clone());
        // Tables of 64 KiB with 100 KiB of data between them: one read for all.
        let mut tables: Vec<(u64, u64)> = (0..20).map(|i| (i * 164 * 1024, 64 * 1024)).collect();
        f.prefetch(&mut tables.clone());
        assert_eq!(inner.1.get(), 1);
        let slots = 20 * (64 * 1024 / PAGE) * core::mem::size_of::<Option<Vec<u8>>>();
        assert_eq!(f.spans.borrow().bytes, 20 * 64 * 1024 + slots, "only the tables are kept");
        f.prefetch(&mut tables);
        assert_eq!(inner.1.get(), 1, "a second pass finds them all cached");
        let mut b = [0u8; 1000];
        f.read_at(5 * 164 * 1024 + 100, &mut b).unwrap();
        assert_eq!(&b[..], &data[5 * 164 * 1024 + 100..5 * 164 * 1024 + 1100]);
        assert_eq!(inner.1.get(), 1);
        f.read_at(5 * 164 * 1024 + 64 * 1024, &mut b).unwrap();
        assert_eq!(inner.1.get(), 2, "bytes between tables are read when asked for");
    }

    #[test]
    fn zero_pages_of_kept_ranges_cost_no_bytes_and_read_back_as_zeros() {
        // A sparse disk's L2 tables: 256 KiB each, one entry set near the middle of each.
        // Each table is followed by a 64 KiB data cluster (not kept).
        let table = 256 * 1024u64;
        let step = table + 64 * 1024;
        let mut data = vec![0u8; (200 * step) as usize];
        for t in 0..200 {
            let at = (t * step + 100_000) as usize;
            data[at..at + 8].copy_from_slice(&(t + 1).to_be_bytes());
            data[(t * step + table) as usize..((t + 1) * step) as usize].fill(0xAB);
        }
        let inner = Arc::new(Counting(MemFile(data.clone()), Cell::new(0)));
        let f = CachedFile::new(inner.clone());
        let mut tables: Vec<(u64, u64)> = (0..200).map(|t| (t * step, table)).collect();
        f.prefetch(&mut tables.clone());
        let reads = inner.1.get();
        assert!(reads > 0);
        // 50 MiB of tables, but one stored page each: all kept under the 16 MiB budget.
        assert!(f.spans.borrow().bytes <= 200 * (PAGE + 64 * 24), "{}", f.spans.borrow().bytes);
        f.prefetch(&mut tables);
        assert_eq!(inner.1.get(), reads, "a second pass reads nothing");
        // Reads across zero and stored pages, and across page boundaries, give the file's bytes.
        for (at, len) in [(0u64, 10usize), (99_990, 30), (4090, 20), (7 * step + 95_000, 10_000), (199 * step, table as usize)] {
            let mut b = vec![0xEEu8; len];
            f.read_at(at, &mut b).unwrap();
            assert_eq!(&b[..], &data[at as usize..at as usize + len], "at {}", at);
        }
        assert_eq!(inner.1.get(), reads, "all served from the kept pages");
    }

    #[test]
    fn bounded_reads_name_the_structure() {
        let f = MemFile(vec![1; 10]);
        let mut b = [0u8; 4];
        let e = read_exact_at(&f, 8, &mut b, "L1 table").unwrap_err();
        assert_eq!(e, Error::PastEnd { what: "L1 table", offset: 8, len: 4, file_size: 10 });
        read_clipped(&f, 8, &mut b).unwrap();
        assert_eq!(b, [1, 1, 0, 0]);
        assert!(read_exact_at(&f, u64::MAX, &mut b, "x").is_err());
    }
}
