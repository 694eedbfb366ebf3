//! GOW v1, v2 and v3 written from the table in DECISIONS.md 4 by the writer in sample.rs (its
//! offsets are the table's numbers, not the reader's), held as sparse in-memory files so a
//! 32 MiB v3 header costs nothing, and read back against a model of the guest bytes.
use alloc::{string::String, sync::Arc, vec, vec::Vec};
use core::cell::Cell;
use proptest::prelude::*;

use crate::chain::Chain;
use crate::convert::Part;
use crate::delta::{delta, histogram, BlockRun, DeltaError, VersionCount};
use crate::error::{Error, Result};
use crate::io::ReadAt;
use crate::model::{Kind, LayoutStatus, Severity};
use crate::testutil::Files;

pub(crate) use super::sample::{content, table, Writer, B, TABLE};
use crate::io::SparseFile as Sparse;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Counts the reads that reach the file.
struct Counting<F: ReadAt>(F, Cell<usize>);
impl<F: ReadAt> ReadAt for Counting<F> {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, o: u64, b: &mut [u8]) -> Result<()> {
        self.1.set(self.1.get() + 1);
        self.0.read_at(o, b)
    }
}


fn open_file(f: Sparse) -> Result<Chain> {
    Chain::open("t.gow", Arc::new(f), None, &Files::default())
}

fn open(w: &Writer) -> Chain {
    open_file(w.file()).unwrap()
}

/// A disk of `blocks` whole blocks plus `tail` bytes, written in a shuffled order.
fn shuffled(version: u8, blocks: u64, tail: u64, seed: u64) -> Writer {
    let mut s = seed;
    let size = blocks * B + tail;
    let total = size.div_ceil(B);
    let mut w = Writer::new(version, size);
    let mut order: Vec<u64> = (0..total).filter(|_| lcg(&mut s) % 4 != 0).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (lcg(&mut s) % (i as u64 + 1)) as usize);
    }
    for (n, &i) in order.iter().enumerate() {
        w.write(i, lcg(&mut s) as u8, 1 + n as u32 / 5);
    }
    // Some blocks written again: same data block, new bytes, newer version.
    for &i in order.iter().take(3) {
        w.write(i, lcg(&mut s) as u8, 100);
    }
    w
}

fn codes(r: &crate::CheckResult) -> Vec<(&'static str, Option<u64>)> {
    let mut v: Vec<_> = r.findings.iter().map(|f| (f.code, f.offset)).collect();
    v.sort();
    v
}

#[test]
fn header_fixtures_match_the_decisions_table_byte_for_byte() {
    for (version, n, h, d) in TABLE {
        let mut w = Writer::new(version, 3 * B + 512);
        w.flags = 1;
        w.write(2, 0x40, 5);
        w.write(0, 0x41, 6);
        let f = w.file();
        let bytes: Vec<u8> = {
            let mut b = vec![0u8; 24];
            f.read_at(0, &mut b).unwrap();
            b
        };
        let size = (3 * B + 512).to_le_bytes();
        let session = if version == 3 { 6u8 } else { 0 };
        let expect: [u8; 24] = [
            b'G', b'O', b'W', b'0' + version, 1, 0, 0, 0, //
            size[0], size[1], size[2], size[3], size[4], size[5], size[6], size[7], //
            2, 0, 0, 0, session, 0, 0, 0,
        ];
        assert_eq!(bytes, expect, "GOW{} preamble", version);
        let chain = open(&w);
        let info = chain.top().info();
        assert_eq!((info.format, info.layout, info.cluster_size, info.virtual_size), ("gow", LayoutStatus::Reconstructed, B, 3 * B + 512));
        assert!(info.variant.starts_with(&alloc::format!("GOW{}", version)), "{}", info.variant);
        assert!(info.variant.contains("reconstructed from the published description (no driver code was ever published)"));
        let fields = chain.top().header_fields();
        let at: Vec<(&str, u64, u64)> = fields.iter().map(|f| (f.name.as_str(), f.offset, f.size)).collect();
        let mut want = vec![("magic", 0, 4), ("flags", 4, 4), ("virtual size", 8, 8), ("allocated blocks", 16, 4), ("session", 20, 4), ("block map", 24, 4 * n)];
        if version == 3 {
            want.push(("block versions", 24 + 4 * n, 4 * n));
        }
        assert_eq!(at, want);
        for f in &fields[..5] {
            assert_eq!(f.raw, expect[f.offset as usize..(f.offset + f.size) as usize], "{}", f.name);
        }
        let get = |name: &str| fields.iter().find(|f| f.name == name).unwrap().clone();
        assert_eq!(get("flags").value, "read-only (gold image)");
        // Block 2 was allocated first (entry 1), block 0 second (entry 2).
        assert_eq!(get("block map").raw, [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(get("block map").value, alloc::format!("2 of {} entries used (4 cover the disk)", n));
        if version == 3 {
            assert_eq!(get("block versions").raw, [6, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(get("block versions").value, "2 of 4 blocks versioned, newest version 6");
        }
        // The data blocks stand where the table puts them: block 2's data is data block 0 at D.
        let mut entries = Vec::new();
        chain.top().map(0, 3 * B + 512, &mut entries).unwrap();
        assert_eq!(entries[0].kind, Kind::Data { file: 0, offset: d + B });
        assert_eq!(entries[1].kind, Kind::Unallocated);
        assert_eq!(entries[2].kind, Kind::Data { file: 0, offset: d });
        assert_eq!(entries[3], crate::Extent { start: 3 * B, length: 512, kind: Kind::Unallocated });
        let regions = chain.top().regions().unwrap();
        assert_eq!(regions.last().map(|r| (r.offset, r.length)), Some((d, 2 * B)));
        assert!(h <= d && d - h < 512 && (version == 1 || d % 512 == 0));
        assert_eq!(super::Geometry::of(version), super::Geometry { version, entries: n, versions_at: 24 + 4 * n, header: h, data: d });
    }
}

#[test]
fn every_version_reads_back_the_model_through_read_and_plan() {
    for version in 1..=3u8 {
        for (blocks, tail, cut) in [(37, 3 * 512, 0), (20, 0, 1000), (9, 60_416, B - 512)] {
            let mut w = shuffled(version, blocks, tail, 7 + version as u64 + blocks);
            w.cut_last(cut);
            let what = alloc::format!("GOW{} {} blocks + {} cut {}", version, blocks, tail, cut);
            let k: Vec<u32> = w.map.values().copied().collect();
            assert!(k.windows(2).any(|p| p[0] > p[1]), "{}: the map should not be the identity", what);
            let chain = open(&w);
            let size = w.size;
            assert_eq!(chain.virtual_size(), size);
            let mut got = vec![0u8; size as usize];
            chain.read(0, &mut got).unwrap();
            if let Some(i) = got.iter().zip(&w.model).position(|(a, b)| a != b) {
                panic!("{}: guest byte {} reads {:#x}, the model says {:#x}", what, i, got[i], w.model[i]);
            }
            // The export plan, replayed over the file's bytes, gives the model too.
            let file = w.file();
            let mut out = Vec::new();
            let mut parts = Vec::new();
            chain
                .plan(|p| {
                    match p {
                        Part::File { layer: 0, file: 0, offset, length } => {
                            let mut b = vec![0u8; length as usize];
                            file.read_at(offset, &mut b).unwrap();
                            out.extend_from_slice(&b);
                        }
                        Part::Zero { length } => out.resize(out.len() + length as usize, 0),
                        other => panic!("unexpected part {:?}", other),
                    }
                    parts.push(p);
                    Ok(())
                })
                .unwrap();
            assert!(out == w.model, "{}: the plan's bytes differ from the model", what);
            assert!(parts.iter().all(|p| !matches!(p, Part::File { offset, length, .. } if offset + length > file.size)), "{}: plan reads past EOF", what);
            // Check: the short block, nothing else wrong.
            let r = chain.top().check().unwrap();
            let bad: Vec<_> = r.findings.iter().filter(|f| f.severity > Severity::Info).map(|f| f.code).collect();
            assert_eq!(bad, if cut > 0 { vec!["short-final-block"] } else { vec![] }, "{}: {:?}", what, r.findings);
            assert_eq!((r.corruptions, r.leaks, r.allocated_clusters, r.total_clusters), (0, 0, w.map.len() as u64, size.div_ceil(B)));
            assert!(r.fragmented_clusters > 0);
        }
    }
}

#[test]
fn the_short_final_block_is_named_by_its_entry_and_reads_zero_past_eof() {
    let mut w = Writer::new(2, 8 * B);
    w.write(5, 1, 0);
    w.write(3, 2, 0); // data block 1, the last one
    w.cut_last(B - 1000);
    let chain = open(&w);
    let r = chain.top().check().unwrap();
    let f = r.findings.iter().find(|f| f.code == "short-final-block").unwrap();
    assert_eq!((f.offset, f.length, f.guest, f.severity), (Some(24 + 4 * 3), 4, Some(3 * B), Severity::Warning));
    assert!(f.message.contains("only 1000 of 65536 bytes"), "{}", f.message);
    let mut b = vec![0xffu8; B as usize];
    chain.read(3 * B, &mut b).unwrap();
    assert_eq!(&b[..1000], &w.blocks[1][..1000]);
    assert!(b[1000..].iter().all(|&x| x == 0));
    // The plan copies the 1000 stored bytes and writes the rest as zeros.
    let mut parts = Vec::new();
    chain.plan(|p| Ok(parts.push(p))).unwrap();
    let d = table(2).2;
    assert!(parts.contains(&Part::File { layer: 0, file: 0, offset: d + B, length: 1000 }), "{:?}", parts);
}

#[test]
fn hostile_entries_get_exact_findings() {
    // 6 blocks of disk; the file holds 4 data blocks.
    let mut w = Writer::new(3, 6 * B);
    for (i, v) in [(0, 2), (1, 2), (2, 3), (3, 3)] {
        w.write(i, i as u8, v);
    }
    let (n, _, d) = table(3);
    let entry = |i: u64| 24 + 4 * i;
    let version = |i: u64| 24 + 4 * n + 4 * i;
    w.map.insert(4, 9); // past the end of the file
    w.map.insert(5, 2); // shares data block 1 with logical block 1
    w.map.insert(0, 4); // block 0 now uses data block 3 too: data block 0 leaks, block 3 shared
    w.map.insert(70, 9); // beyond the disk (and past the end of the file)
    w.versions.insert(5, 0); // stored with version 0
    w.versions.insert(4, 3);
    w.versions.insert(70, 8);
    w.versions.insert(1, 9); // newer than the session (3)
    w.count = Some(3);
    w.flags = 0x11;
    let mut f = w.file();
    f.poke(version(60), &7u32.to_le_bytes()); // a version past the disk, with no map entry
    let chain = open_file(f.clone()).unwrap();
    let r = chain.top().check().unwrap();
    let mut want = vec![
        ("block-past-eof", Some(entry(4))),
        ("block-shared", Some(entry(3))),
        ("block-shared", Some(entry(5))),
        ("blocks-allocated", Some(24)),
        ("count-vs-file", Some(16)),
        ("count-vs-map", Some(16)),
        ("entry-beyond-size", Some(entry(70))),
        ("flags-unknown", Some(4)),
        ("leaked-blocks", Some(d)),
        ("read-only", Some(4)),
        ("version-after-session", Some(version(1))),
        ("version-beyond-size", Some(version(60))),
        ("version-beyond-size", Some(version(70))),
        ("version-missing", Some(version(5))),
    ];
    want.sort();
    assert_eq!(codes(&r), want);
    let sev = |c: &str| r.findings.iter().find(|f| f.code == c).unwrap().severity;
    assert_eq!((sev("block-past-eof"), sev("block-shared"), sev("leaked-blocks"), sev("count-vs-map")),
        (Severity::Corruption, Severity::Corruption, Severity::Leak, Severity::Corruption));
    assert_eq!((r.corruptions, r.leaks), (4, 1));
    let shared = r.findings.iter().find(|f| f.code == "block-shared" && f.offset == Some(entry(5))).unwrap();
    assert!(shared.message.contains("logical blocks 1 and 5 both map to data block 1"), "{}", shared.message);
    let past = r.findings.iter().find(|f| f.code == "block-past-eof").unwrap();
    assert_eq!(past.guest, Some(4 * B));
    // The map marks the entry past the end as invalid; reading it names the entry.
    let mut entries = Vec::new();
    chain.map(0, 6 * B, &mut entries).unwrap();
    assert!(entries.iter().any(|e| e.start == 4 * B && e.invalid == Some(entry(4))));
    let mut buf = vec![0u8; 512];
    assert_eq!(chain.read(4 * B + 512, &mut buf), Err(Error::CorruptMapping { guest: 4 * B + 512, file: String::from("t.gow"), offset: entry(4) }));
    // Blocks 3 and 0 both read data block 3; block 5 reads data block 1.
    let mut a = vec![0u8; B as usize];
    let mut b = vec![0u8; B as usize];
    chain.read(0, &mut a).unwrap();
    chain.read(3 * B, &mut b).unwrap();
    assert!(a == b && a == w.blocks[3]);
    chain.read(5 * B, &mut a).unwrap();
    assert!(a == w.blocks[1]);

    // A version on a block never written.
    let mut w = Writer::new(3, 2 * B);
    w.write(0, 1, 1);
    w.versions.insert(1, 4);
    let r = open(&w).top().check().unwrap();
    let f = r.findings.iter().find(|f| f.code == "version-on-unallocated").unwrap();
    assert_eq!((f.offset, f.guest), (Some(24 + 4 * (1 << 22) + 4), Some(B)));
}

#[test]
fn a_file_ending_just_short_of_2_64_has_its_short_block_and_leak_named() {
    // Found by fmt_gow: the end of the last data block, and the start of the block after
    // it, lie past 2^64; the findings' lengths are counted from the file's end instead.
    let mut w = Writer::new(1, 2 * B);
    w.write(0, 1, 0);
    let mut f = w.file();
    let eof = u64::MAX - 253;
    f.size = eof;
    let (_, _, d) = table(1);
    let stored = eof - d;
    let last = d + (stored / B) * B; // the short last data block
    let r = open_file(f).unwrap().top().check().unwrap();
    let find = |c: &str| r.findings.iter().find(|f| f.code == c).unwrap_or_else(|| panic!("no {} in {:?}", c, r.findings));
    let short = find("short-final-block");
    assert_eq!((short.offset, short.length, short.severity), (Some(last), stored % B, Severity::Warning));
    assert!(short.message.contains(&alloc::format!("only {} of 65536 bytes, and no map entry uses it", stored % B)), "{}", short.message);
    let leak = find("leaked-blocks");
    assert_eq!((leak.offset, leak.length, leak.severity), (Some(d + B), eof - (d + B), Severity::Leak));
    assert_eq!(r.leaks, stored.div_ceil(B) - 1);
}

#[test]
fn bad_headers_are_refused_with_the_offset_of_the_field() {
    // Larger than the map can address: 64 GiB + 512 for v1, 256 GiB + 512 for v2.
    for (version, size) in [(1u8, (1u64 << 36) + 512), (2, (1 << 38) + 512), (3, 1000)] {
        let w = Writer::new(version, 0);
        let mut f = w.file();
        f.poke(8, &size.to_le_bytes());
        match open_file(f) {
            Err(Error::Invalid { format: "gow", offset: 8, message }) => assert!(message.contains("virtual size"), "{}", message),
            other => panic!("GOW{} size {}: {:?}", version, size, other.map(|_| ())),
        }
    }
    // Exactly the largest size opens (on a sparse file).
    let mut w = Writer::new(1, 0);
    w.size = 1 << 36;
    assert_eq!(open_file(w.file()).unwrap().virtual_size(), 1 << 36);
    // The entries covering the disk must be in the file.
    let mut f = Writer::new(2, 10 * B).file();
    f.size = 24 + 4 * 9;
    match open_file(f) {
        Err(Error::PastEnd { offset: 24, len: 40, file_size: 60, .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Shorter than the preamble.
    let mut f = Writer::new(2, 10 * B).file();
    f.size = 20;
    assert!(matches!(open_file(f), Err(Error::PastEnd { what: "GOW header", .. })));
    // A header cut after the entries the disk needs opens; check says the header is short.
    let mut w = Writer::new(1, 4 * B);
    w.write(1, 1, 0);
    let mut f = w.file();
    f.chunks.retain(|(at, _)| *at < 100);
    f.size = 24 + 4 * 4;
    let chain = open_file(f).unwrap();
    let r = chain.top().check().unwrap();
    assert_eq!(codes(&r), vec![("block-past-eof", Some(28)), ("blocks-allocated", Some(24)), ("count-vs-file", Some(16)), ("header-short", Some(40))]);
}

#[test]
fn a_256_gib_v3_image_opens_and_maps_in_a_few_large_reads() {
    let size = 256u64 << 30;
    let mut w = Writer::new(3, 0);
    w.size = size;
    w.model = Vec::new();
    let last = size / B - 1;
    for (n, i) in [last, 0, 1 << 20, 77].into_iter().enumerate() {
        w.map.insert(i, n as u32 + 1);
        w.versions.insert(i, n as u32 + 1);
        w.blocks.push(content(i, 9));
    }
    w.session = 4;
    let file = Arc::new(Counting(w.file(), Cell::new(0)));
    let chain = Chain::open("big.gow", file.clone(), None, &Files::default()).unwrap();
    let opened = file.1.get();
    assert!(opened <= 8, "open took {} reads", opened);
    let mut runs = 0;
    chain.for_each_entry(|_| Ok(runs += 1)).unwrap();
    let cells = chain.cells(1 << 16).unwrap();
    assert_eq!(cells.classes.len(), 1 << 16);
    assert_eq!(runs, 7);
    assert_eq!(file.1.get(), opened, "mapping reads nothing more");
    let h = histogram(chain.top()).unwrap().unwrap();
    assert_eq!(h.versions[0], VersionCount { version: 0, blocks: (1 << 22) - 4, bytes: size - 4 * B });
    assert_eq!(h.versions.len(), 5);
    let mut b = vec![0u8; B as usize];
    chain.read(last * B, &mut b).unwrap();
    assert!(b == content(last, 9));
    assert!(chain.top().check().unwrap().findings.iter().all(|f| f.severity == Severity::Info));
}

/// Master and local GOW3 copies of one disk with known differences.
fn pair() -> (Writer, Writer) {
    let size = 10 * B + 1024; // 11 blocks, the last 1024 bytes
    let mut master = Writer::new(3, size);
    let mut local = Writer::new(3, size);
    for i in 0..5 {
        master.write(i, 1, 3);
        local.write(4 - i, 1, 3); // same versions, other allocation order
    }
    local.write(2, 1, 1);
    local.versions.insert(2, 1); // block 2: master 3, local 1
    master.write(5, 2, 7); // only on the master
    master.write(6, 2, 7);
    master.write(10, 2, 7); // the short last block
    local.write(8, 3, 2); // only on the local side
    local.write(4, 3, 5); // block 4: local 5, master 3
    (master, local)
}

fn run(first_block: u64, blocks: u64, master_version: u32, local_version: u32, size: u64) -> BlockRun {
    let start = first_block * B;
    BlockRun { first_block, blocks, start, length: (blocks * B).min(size - start), master_version, local_version }
}

#[test]
fn delta_lists_what_the_local_copy_lacks_and_has_beyond_its_master() {
    let (master, local) = pair();
    let size = master.size;
    let (m, l) = (open(&master), open(&local));
    let d = delta(m.top(), l.top()).unwrap();
    assert_eq!((d.granularity, d.virtual_size, d.blocks), (B, size, 11));
    assert_eq!(d.master_newer.runs, vec![run(2, 1, 3, 1, size), run(5, 2, 7, 0, size), run(10, 1, 7, 0, size)]);
    assert_eq!((d.master_newer.blocks, d.master_newer.bytes), (4, 3 * B + 1024));
    assert_eq!(d.local_newer.runs, vec![run(4, 1, 3, 5, size), run(8, 1, 0, 2, size)]);
    assert_eq!((d.local_newer.blocks, d.local_newer.bytes), (2, 2 * B));
    assert_eq!(d.master_only.runs, vec![run(5, 2, 7, 0, size), run(10, 1, 7, 0, size)]);
    assert_eq!(d.local_only.runs, vec![run(8, 1, 0, 2, size)]);
    assert_eq!(d.master_only.runs_dropped, 0);
    // The other way round, the sets swap.
    let r = delta(l.top(), m.top()).unwrap();
    assert_eq!((r.master_newer.blocks, r.local_newer.blocks, r.master_only.blocks, r.local_only.blocks), (2, 4, 1, 3));
    // An image against itself: nothing to fetch.
    let s = delta(m.top(), m.top()).unwrap();
    assert_eq!((s.master_newer.blocks, s.local_newer.blocks, s.master_only.blocks, s.local_only.blocks), (0, 0, 0, 0));
}

#[test]
fn delta_refuses_different_sizes_and_images_without_versions() {
    let (master, _) = pair();
    let m = open(&master);
    let other = open(&Writer::new(3, 12 * B));
    assert_eq!(delta(m.top(), other.top()).unwrap_err(), DeltaError::SizeDiffers { master: 10 * B + 1024, local: 12 * B });
    let mut v2 = Writer::new(2, master.size);
    v2.write(0, 1, 0);
    let v2 = open(&v2);
    match delta(m.top(), v2.top()).unwrap_err() {
        e @ DeltaError::NoVersions { side: "local", .. } => assert!(alloc::format!("{}", e).contains("keeps no block versions"), "{}", e),
        e => panic!("{:?}", e),
    }
    assert!(matches!(delta(v2.top(), m.top()), Err(DeltaError::NoVersions { side: "master", .. })));
    assert_eq!(histogram(v2.top()).unwrap(), None);
    assert_eq!(v2.top().block_versions(0, 10).unwrap(), None);
}

#[test]
fn block_versions_and_the_histogram_follow_the_version_array() {
    let (master, _) = pair();
    let m = open(&master);
    let v = m.top().block_versions(3, 100).unwrap().unwrap();
    assert_eq!((v.granularity, v.first_block, v.versions), (B, 3, vec![3, 3, 7, 7, 0, 0, 0, 7]));
    let h = histogram(m.top()).unwrap().unwrap();
    assert_eq!(h.versions, vec![
        VersionCount { version: 0, blocks: 3, bytes: 3 * B },
        VersionCount { version: 3, blocks: 5, bytes: 5 * B },
        VersionCount { version: 7, blocks: 3, bytes: 2 * B + 1024 },
    ]);
    assert_eq!(h.blocks, 11);
}

/// A small image of each version with findings of every kind to mutate.
fn seed_image(version: u8) -> Sparse {
    let mut w = shuffled(version, 6, 512, 3);
    w.cut_last(700);
    w.file()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    /// Any bytes written into the preamble, the first map and version entries or the data
    /// area, and any file length: open, map, read, check, the report, the histogram and a
    /// delta answer with a value or an error, never a panic.
    #[test]
    fn mutated_images_never_panic(
        version in 1u8..=3,
        muts in prop::collection::vec((0u8..3, 0u64..64, any::<u64>(), any::<bool>()), 1..6),
        cut in prop::option::of(0u64..400_000),
    ) {
        let mut f = seed_image(version);
        let (n, _, d) = table(version);
        for (region, at, v, wide) in muts {
            let base = [0, 24 + 4 * n, d][region as usize];
            let bytes = v.to_le_bytes();
            f.poke(base + at, if wide { &bytes[..] } else { &bytes[..4] });
        }
        if let Some(c) = cut {
            f.size = f.size.saturating_sub(c);
        }
        if let Ok(chain) = open_file(f) {
            let size = chain.virtual_size();
            let mut entries = Vec::new();
            let _ = chain.map(0, size.min(1 << 30), &mut entries);
            let _ = chain.top().check();
            let mut buf = vec![0u8; 4096];
            if size >= 4096 {
                let _ = chain.read(0, &mut buf);
                let _ = chain.read(size - 4096, &mut buf);
            }
            let _ = chain.plan(|_| Ok(()));
            let _ = crate::report::Report::new(&chain);
            let _ = histogram(chain.top());
            let _ = delta(chain.top(), chain.top());
        }
    }
}

/// Each version as two fuzz seeds: the whole file, 4 to 32 MiB of mostly zero tables, in
/// the sparse form the targets decode (it must read back as the image it holds), and its
/// first 4 KiB, which must say it is cut short.
#[test]
fn fuzz_seeds_are_whole_sparse_images_and_cut_ones_that_say_so() {
    for version in 1u8..=3 {
        let f = seed_image(version);
        let mut head = vec![0u8; 4096];
        f.read_at(0, &mut head).unwrap();
        match Chain::open("t.gow", Arc::new(crate::io::MemFile(head.clone())), None, &Files::default()) {
            // GOW3 needs its version entries to open; the others read what is there.
            Err(Error::PastEnd { what, offset, .. }) if version == 3 => {
                assert_eq!((what, offset), ("GOW version entries covering the disk", 24 + 4 * table(3).0))
            }
            Ok(chain) if version < 3 => {
                let r = chain.top().check().unwrap();
                assert!(codes(&r).contains(&("header-short", Some(4096))), "version {}: {:?}", version, codes(&r));
            }
            other => panic!("version {}: {:?}", version, other.map(|c| c.virtual_size())),
        }
        crate::testutil::fuzz_seed("fmt_gow", &alloc::format!("v{}", version), &[&head]);
        let whole = f.to_bytes();
        let seed = Sparse::decode(&Sparse::encode(&whole)).unwrap();
        assert_eq!((seed.size, seed.to_bytes() == whole), (whole.len() as u64, true), "version {}", version);
        let found = |f: Sparse| codes(&open_file(f).unwrap().top().check().unwrap()).into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        assert_eq!(found(seed), found(f.clone()), "version {}", version);
        crate::testutil::fuzz_seed("fmt_gow", &alloc::format!("v{}-whole", version), &[&whole]);
    }
}
