//! Opening any image needs at most 64 MiB of memory for its metadata, whatever its header
//! claims (docs/limits.md). Measured with a counting global allocator over images whose
//! headers claim tables at and past every limit, in files that claim terabytes but hold
//! only their header (the rest reads as zeros, so nothing is allocated for them here).
//! One test in its own binary, so no other test's allocations are counted.
#[path = "hostile/gen.rs"]
#[allow(dead_code)]
mod gen;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use diskscope_core::{Chain, Error, ReadAt, Resolver};
use gen::{be32, be64, le32, le64, Qcow2, Qed};

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), SeqCst) + l.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), SeqCst) + l.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), SeqCst);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A file of `size` bytes holding `head` and zeros after it.
struct Claimed {
    head: Vec<u8>,
    size: u64,
    /// Bytes at the very end (a VHD's footer copy).
    tail: Vec<u8>,
}

impl ReadAt for Claimed {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        buf.fill(0);
        let end = offset + buf.len() as u64;
        if offset < self.head.len() as u64 {
            let n = (self.head.len() as u64).min(end) - offset;
            buf[..n as usize].copy_from_slice(&self.head[offset as usize..(offset + n) as usize]);
        }
        let tail_at = self.size - self.tail.len() as u64;
        if end > tail_at {
            let from = offset.max(tail_at);
            buf[(from - offset) as usize..].copy_from_slice(&self.tail[(from - tail_at) as usize..(end - tail_at) as usize]);
        }
        Ok(())
    }
    /// The zeros between head and tail are a hole, as in the sparse file such a header is.
    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        let (head, tail_at) = (self.head.len() as u64, self.size - self.tail.len() as u64);
        Some(if offset < head || offset >= tail_at { (true, len) } else { (false, (tail_at - offset).min(len)) })
    }
}

struct NoFiles;
impl Resolver for NoFiles {
    fn resolve(&self, _: &str, _: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        None
    }
}

/// Peak bytes held above what was held before, while opening the image, walking the map
/// of its first `walk` bytes and reading its first 4 KiB; then while also checking it (the open still held); and the open's
/// outcome.
fn peak(head: Vec<u8>, tail: Vec<u8>, size: u64, walk: u64) -> (usize, usize, Result<(), Error>) {
    let file: Arc<dyn ReadAt> = Arc::new(Claimed { head, size, tail });
    let base = NOW.load(SeqCst);
    PEAK.store(base, SeqCst);
    let mut open_peak = 0;
    let outcome = Chain::open("a", file, None, &NoFiles).map(|c| {
        // Walked as the CLI walks it: the core's windows, not a caller's list of every run.
        let _ = c.for_each_entry_in(0, walk, |_| Ok(()));
        let mut buf = vec![0u8; 4096];
        let _ = c.read(0, &mut buf);
        drop(buf);
        open_peak = PEAK.load(SeqCst) - base;
        let _ = c.top().check();
    });
    let open_peak = if outcome.is_ok() { open_peak } else { PEAK.load(SeqCst) - base };
    (open_peak, PEAK.load(SeqCst) - base, outcome)
}

const MIB: usize = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

#[test]
fn metadata_memory_stays_under_64_mib_whatever_the_header_claims() {
    let mut cases: Vec<(&str, Vec<u8>, Vec<u8>, u64, u64)> = Vec::new();
    // qcow2: the largest L1 QEMU allows (32 MiB), a refcount table at the table limit,
    // and tables past it.
    for (what, size, reftable_clusters) in [("qcow2 32 MiB L1, 8 MiB refcount table", 1u64 << 51, 128u32), ("qcow2 64 MiB refcount table", 1 << 30, 1024), ("qcow2 1 GiB refcount table", 1 << 30, 1 << 14)] {
        let mut f = Qcow2::new(1 << 20).file;
        f.truncate(Qcow2::L1 as usize);
        be64(&mut f, Qcow2::SIZE, size);
        be32(&mut f, Qcow2::L1_SIZE, size.div_ceil(1 << 29) as u32);
        be32(&mut f, 56, reftable_clusters);
        be64(&mut f, Qcow2::L1_OFFSET, 1 << 32);
        cases.push((what, f, Vec::new(), 4 * TIB, GIB));
    }
    // QED: 16 tables of 4 MiB clusters (a 64 MiB L1), and 64 MiB clusters (a 1 GiB L1).
    for (what, cluster) in [("qed 64 MiB L1", 4u32 << 20), ("qed 1 GiB L1", 64 << 20)] {
        let mut f = Qed::new(1 << 40).file;
        f.truncate(4096);
        le32(&mut f, 4, cluster);
        le32(&mut f, 8, 16);
        le64(&mut f, 40, cluster as u64);
        cases.push((what, f, Vec::new(), 4 * TIB, GIB));
    }
    // Block maps and BATs of 4-byte entries at the table limit, one entry short of it, and
    // twice it.
    let limit = (diskscope_core::limits::MAX_TABLE_BYTES / 4) as u32;
    for (what, n) in [("at the table limit", limit), ("one entry short", limit - 1), ("at twice the limit", 2 * limit)] {
        cases.push((leak(format!("vdi block map {}", what)), gen::vdi(n), Vec::new(), n as u64 * (1 << 20) + (1 << 30), GIB));
        cases.push((leak(format!("parallels BAT {}", what)), gen::parallels(n), Vec::new(), n as u64 * (1 << 20) + (1 << 30), GIB));
        let (head, footer) = gen::vpc(n.min(1 << 20));
        cases.push((leak(format!("vhd BAT {} (VHD's own 2 TiB limit)", what)), head, footer, 4 * TIB, GIB));
    }
    // A 2 TiB VHD (its own limit) of 256 KiB blocks: a BAT at the table limit, all zeros,
    // every entry a block at sector 0, each one checked for overlaps (found by the chain fuzz
    // target: the check held 16 bytes per entry twice, 256 MiB).
    let (head, footer) = vhd_2tib_256k_blocks(limit);
    cases.push(("vhd BAT at the table limit, every entry at sector 0", head, footer, 4 * TIB, GIB));
    // The same disk unallocated for 32 GiB, then 8 GiB of blocks whose bitmap is the footer
    // copy (a run every few sectors): the walk once grew its window over the empty part and
    // mapped the dense part 32 GiB at a time.
    let (mut head, footer) = vhd_2tib_256k_blocks(limit);
    let blocks = |gib: u64| (gib * GIB / (256 << 10)) as usize;
    let mut bat = vec![0xffu8; limit as usize * 4];
    bat[blocks(32) * 4..blocks(40) * 4].fill(0);
    head.extend_from_slice(&bat);
    cases.push(("vhd empty for 32 GiB, then 8 GiB of dense runs, walked to 40 GiB", head, footer, 4 * TIB, 40 * GIB));
    // VMDK: a directory at the table limit (256 TiB of 64 KiB grains) naming 8 Mi grain
    // tables, none next to another, in host holes. The check kept each table's range for its
    // overlap test: 256 MiB.
    cases.push(("vmdk directory at the table limit, every grain table apart", gen::vmdk_scattered_tables(limit), Vec::new(), 64 * GIB, GIB));
    let mut report = Vec::new();
    for (what, head, tail, size, walk) in cases {
        let (bytes, with_check, outcome) = peak(head, tail, size, walk);
        report.push(format!("{}: {:.1} MiB, with the check {:.1} MiB, {:?}", what, bytes as f64 / MIB as f64, with_check as f64 / MIB as f64, outcome.as_ref().err()));
        assert!(bytes as u64 <= diskscope_core::limits::MAX_METADATA_BYTES, "{}: {} bytes ({:?})", what, bytes, outcome);
        // A check holds its per-cluster accounting besides: at most one table more.
        let check_limit = diskscope_core::limits::MAX_METADATA_BYTES + diskscope_core::limits::MAX_TABLE_BYTES;
        assert!(with_check as u64 <= check_limit, "{} with its check: {} bytes", what, with_check);
        // Tables past QEMU's own limits are refused by name before anything is read.
        if what.contains("twice the limit") && !what.starts_with("vhd") {
            let name = if what.starts_with("vdi") { "VDI block map" } else { "Parallels BAT" };
            let limit = diskscope_core::limits::MAX_TABLE_BYTES;
            assert_eq!(outcome, Err(Error::Limit { what: name, needed: 2 * limit, limit }), "{}", what);
        }
        if what.contains("refcount table") && !what.contains("L1") {
            assert!(matches!(outcome, Err(Error::Invalid { format: "qcow2", offset: 56, .. })), "{}: {:?}", what, outcome);
        }
    }
    eprintln!("{}", report.join("\n"));
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The footer and dynamic header (BAT not included) of a 2 TiB VHD of 256 KiB blocks whose
/// BAT has `entries` entries.
fn vhd_2tib_256k_blocks(entries: u32) -> (Vec<u8>, Vec<u8>) {
    let (mut head, mut footer) = gen::vpc(entries);
    for f in [&mut head, &mut footer] {
        be64(f, 40, entries as u64 * (256 << 10));
        be64(f, 48, entries as u64 * (256 << 10));
        be32(f, 64, 0);
        let sum = !f[..512].iter().map(|&b| b as u32).sum::<u32>();
        be32(f, 64, sum);
    }
    be32(&mut head, 512 + 32, 256 << 10);
    be32(&mut head, 512 + 36, 0);
    let sum = !head[512..1536].iter().map(|&b| b as u32).sum::<u32>();
    be32(&mut head, 512 + 36, sum);
    head.truncate(1536);
    (head, footer)
}
