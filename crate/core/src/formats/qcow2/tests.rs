//! qcow2 images laid out from the spec by the writer in sample.rs (with refcounts, snapshots,
//! compressed clusters, subclusters, data files), read back through the chain against a
//! model of the guest bytes, checked, and mutated at random to prove no input panics.
use alloc::{format, string::String, vec, vec::Vec};
use proptest::prelude::*;

use super::{L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED};
use crate::chain::Chain;
use crate::image::OpenOptions;
use crate::map::MapEntry;
use crate::model::Severity;
use crate::testutil::Files;

pub(crate) use super::sample::{get64, put, Writer};

pub(crate) fn open_files(files: &Files, top: &str, snapshot: Option<&str>) -> crate::error::Result<Chain> {
    let options = OpenOptions { snapshot: snapshot.map(String::from), ..OpenOptions::default() };
    Chain::open_with(top, alloc::sync::Arc::new(crate::io::MemFile(files.0[top].clone())), None, files, &options)
}

fn lcg(s: &mut u64) -> u64 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *s >> 33
}

/// A cluster of data that compresses but is not uniform.
fn pattern(cs: u64, seed: u8) -> Vec<u8> {
    (0..cs).map(|i| ((i / 7) as u8).wrapping_mul(seed) ^ (i % 5) as u8).collect()
}

/// Random whole-cluster writes, zeros, compressed clusters and subclusters over a raw
/// backing file shorter than the disk; the chain must read exactly the model.
fn round_trip(bits: u32, v3: bool, ext: bool, zstd: bool, seed: u64) {
    let cs = 1u64 << bits;
    let size = 64 * cs * 3 + 512 * 3;
    let base: Vec<u8> = (0..size / 2).map(|i| (i % 251) as u8 + 1).collect();
    let mut w = Writer::new(bits, size, v3, ext, Some(("base.raw", Some("raw"))));
    if zstd {
        w = w.with_zstd();
    }
    let mut model = base.clone();
    model.resize(size as usize, 0);
    let clusters = size.div_ceil(cs);
    let mut s = seed;
    for step in 0..300 {
        let c = lcg(&mut s) % clusters;
        let g = c * cs;
        let (a, b) = (g as usize, ((c + 1) * cs).min(size) as usize);
        let fill = (lcg(&mut s) as u8) | 1;
        match lcg(&mut s) % 6 {
            0 if v3 && !ext => {
                w.zero_cluster(g, step % 2 == 0);
                model[a..b].fill(0);
            }
            1 => {
                let data = pattern(cs, fill);
                w.write_compressed(g, &data);
                model[a..b].copy_from_slice(&data[..b - a]);
            }
            2 | 3 if ext => {
                let sub = lcg(&mut s) % 32;
                let sc = cs / 32;
                let (sa, sb) = ((g + sub * sc) as usize, ((g + (sub + 1) * sc).min(size)) as usize);
                if lcg(&mut s) % 2 == 0 {
                    w.write_sub(g, sub, fill);
                    if sa < sb {
                        model[sa..sb].fill(fill);
                    }
                } else {
                    // Only on a cluster that is stored: a subcluster's zero bit over a
                    // compressed or absent cluster is not what QEMU writes.
                    let e = w.l2_entry(g);
                    if w.get(e) & OFLAG_COMPRESSED == 0 && w.get(e) & L2E_OFFSET_MASK != 0 {
                        w.zero_sub(g, sub);
                        if sa < sb {
                            model[sa..sb].fill(0);
                        }
                    }
                }
            }
            _ => {
                w.write_cluster(g, fill);
                model[a..b].fill(fill);
            }
        }
    }
    let w = w.finish();
    let files = Files::new([("t.qcow2", w.file.clone()), ("base.raw", base)]);
    let chain = open_files(&files, "t.qcow2", None).unwrap();
    let what = format!("bits {} v3 {} ext {} zstd {} seed {}", bits, v3, ext, zstd, seed);
    assert_eq!(chain.virtual_size(), size, "{}", what);
    let mut got = vec![0u8; size as usize];
    chain.read(0, &mut got).unwrap();
    if let Some(i) = got.iter().zip(&model).position(|(x, y)| x != y) {
        panic!("{}: guest byte {} reads {:#x}, the model says {:#x}", what, i, got[i], model[i]);
    }
    // The map covers the disk exactly, and each data run reads what it says.
    let mut entries: Vec<MapEntry> = Vec::new();
    chain.for_each_entry(|e| Ok(entries.push(*e))).unwrap();
    let mut pos = 0;
    for e in &entries {
        assert_eq!(e.start, pos, "{}", what);
        pos += e.length;
        if e.depth == 0 && e.data && !e.compressed {
            let off = e.offset.unwrap() as usize;
            assert_eq!(&w.file[off..off + e.length as usize], &model[e.start as usize..(e.start + e.length) as usize], "{}", what);
        }
    }
    assert_eq!(pos, size);
    let r = chain.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks, r.check_errors), (0, 0, 0), "{}: {:#?}", what, r.findings);
    assert!(r.compressed_clusters > 0, "{}: the sequence writes compressed clusters", what);
    let hm = chain.top().host_map(1 << 20).unwrap().unwrap();
    assert_eq!(hm.totals.iter().sum::<u64>(), w.file.len() as u64, "{}", what);
    assert_eq!(hm.totals[super::check::hc::LEAKED as usize] + hm.totals[super::check::hc::CORRUPT as usize], 0, "{}", what);
}

#[test]
fn writer_images_read_back_as_the_model_says() {
    for (bits, v3, ext, zstd) in [(16, true, false, false), (16, false, false, false), (9, true, false, false), (12, true, false, true), (14, true, true, false), (16, true, true, true)] {
        round_trip(bits, v3, ext, zstd, 0x5eed + bits as u64);
    }
}

#[test]
fn snapshots_are_listed_and_opened_by_id_or_name() {
    let cs = 4096u64;
    let mut w = Writer::new(12, 64 * cs, true, false, None);
    w.write_cluster(0, 1);
    w.write_cluster(cs, 2);
    w.snapshot("1", "before");
    w.write_cluster(0, 3);
    w.write_cluster(5 * cs, 4);
    w.snapshot("2", "after");
    w.write_cluster(cs, 5);
    let w = w.finish();
    let files = Files::new([("s.qcow2", w.file.clone())]);
    let current = open_files(&files, "s.qcow2", None).unwrap();
    let snaps = current.top().snapshots();
    assert_eq!(snaps.iter().map(|s| (s.id.as_str(), s.name.as_str())).collect::<Vec<_>>(), [("1", "before"), ("2", "after")]);
    assert_eq!((snaps[0].date_sec, snaps[0].vm_clock_sec, snaps[0].vm_clock_nsec, snaps[0].virtual_size), (1_700_000_000, 3, 500_000_000, Some(64 * cs)));
    let first = |c: &Chain, g: u64| {
        let mut b = [0u8; 1];
        c.read(g, &mut b).unwrap();
        b[0]
    };
    assert_eq!((first(&current, 0), first(&current, cs), first(&current, 5 * cs)), (3, 5, 4));
    for key in ["1", "before"] {
        let c = open_files(&files, "s.qcow2", Some(key)).unwrap();
        assert_eq!((first(&c, 0), first(&c, cs), first(&c, 5 * cs)), (1, 2, 0), "snapshot {}", key);
        assert!(c.top().info().variant.contains("\"before\""));
    }
    let c = open_files(&files, "s.qcow2", Some("after")).unwrap();
    assert_eq!((first(&c, 0), first(&c, cs), first(&c, 5 * cs)), (3, 2, 4));
    let e = open_files(&files, "s.qcow2", Some("nope")).err().unwrap();
    let m = format!("{}", e);
    assert!(m.contains("no snapshot 'nope'") && m.contains("1 \"before\"") && m.contains("2 \"after\""), "{}", m);
    // Shared clusters are refcounted twice; the check agrees with the writer.
    let r = current.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "snapshots"));
}

#[test]
fn an_external_data_file_is_a_companion() {
    let cs = 65536u64;
    let mut w = Writer::new(16, 8 * cs, true, false, None).with_data_file("disk.data");
    w.write_cluster(cs, 7);
    w.write_cluster(3 * cs, 8);
    w.zero_cluster(3 * cs, true);
    let w = w.finish();
    let data = w.data_file.clone().unwrap();
    let files = Files::new([("d.qcow2", w.file.clone()), ("disk.data", data)]);
    let c = open_files(&files, "d.qcow2", None).unwrap();
    let info = c.top().info();
    assert_eq!(info.companions[0].name, "disk.data");
    assert_eq!(info.companions[0].found.as_deref(), Some("disk.data"));
    let mut entries = Vec::new();
    c.map(0, 8 * cs, &mut entries).unwrap();
    let data_run = entries.iter().find(|e| e.data).unwrap();
    assert_eq!((data_run.start, data_run.offset, data_run.file), (cs, Some(cs), 1));
    let zero_alloc = entries.iter().find(|e| e.start == 3 * cs).unwrap();
    assert!(zero_alloc.zero && zero_alloc.present && !zero_alloc.data);
    let mut b = vec![0u8; (4 * cs) as usize];
    c.read(0, &mut b).unwrap();
    assert!(b[cs as usize..2 * cs as usize].iter().all(|&x| x == 7) && b[3 * cs as usize..].iter().all(|&x| x == 0));
    let r = c.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "external-data-file" && f.severity == Severity::Warning));
    // Without the data file: the data is missing, named; zeros still read as zeros.
    let alone = Files::new([("d.qcow2", w.file.clone())]);
    let c = open_files(&alone, "d.qcow2", None).unwrap();
    assert_eq!(c.top().info().companions[0].found, None);
    let err = c.read(cs, &mut b[..512]).unwrap_err();
    assert!(format!("{}", err).contains("disk.data"), "{}", err);
    c.read(3 * cs, &mut b[..512]).unwrap();
}

#[test]
fn compressed_clusters_that_do_not_decode_name_their_entry() {
    let cs = 65536u64;
    let mut w = Writer::new(16, 4 * cs, true, false, None);
    w.write_compressed(0, &pattern(cs, 3));
    let mut w = w.finish();
    let l2 = w.get(w.l1) & L1E_OFFSET_MASK;
    let e = w.get(l2);
    let off = e & ((1u64 << 54) - 1);
    for b in &mut w.file[off as usize..off as usize + 16] {
        *b = 0xff;
    }
    let files = Files::new([("c.qcow2", w.file)]);
    let c = open_files(&files, "c.qcow2", None).unwrap();
    let mut buf = vec![0u8; 4096];
    let m = format!("{}", c.read(0, &mut buf).unwrap_err());
    assert!(m.contains(&format!("L2 entry at byte {}", l2)) && m.contains("deflate"), "{}", m);
}

#[test]
fn check_counts_what_was_broken_on_purpose() {
    let cs = 65536u64;
    let base = {
        let mut w = Writer::new(16, 16 * cs, true, false, None);
        for c in 0..4 {
            w.write_cluster(c * cs, c as u8 + 1);
        }
        w.finish()
    };
    let l2 = base.get(base.l1) & L1E_OFFSET_MASK;
    let run = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut file = base.file.clone();
        f(&mut file);
        let files = Files::new([("x.qcow2", file)]);
        open_files(&files, "x.qcow2", None).unwrap().top().check().unwrap()
    };
    let clean = run(&|_| {});
    assert_eq!((clean.corruptions, clean.leaks, clean.allocated_clusters, clean.total_clusters), (0, 0, 4, 16));
    assert_eq!(clean.image_end_offset, Some(base.file.len() as u64));
    // Two entries, one cluster: referenced twice, refcount 1; the other cluster leaks.
    let first = get64(&base.file, l2);
    let r = run(&|f| put(f, l2 + 8, &first.to_be_bytes()));
    assert_eq!((r.corruptions, r.leaks, r.exit_code()), (1, 1, 2), "{:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "refcount-too-low" && f.message.contains("referenced 2 times")));
    // An entry past the end of the file (and, as qemu-img counts it, COPIED set on a
    // cluster whose refcount is 0), another unaligned.
    let r = run(&|f| put(f, l2 + 16, &(OFLAG_COPIED | 0x4000_0000).to_be_bytes()));
    assert_eq!((r.corruptions, r.leaks), (2, 1), "{:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "past-end" && f.offset == Some(l2 + 16)));
    let r = run(&|f| put(f, l2 + 16, &(get64(f, l2 + 16) + 512).to_be_bytes()));
    assert!(r.findings.iter().any(|f| f.code == "l2-entry-unaligned" && f.offset == Some(l2 + 16)));
    // A leaked cluster: an entry dropped.
    let r = run(&|f| put(f, l2 + 24, &0u64.to_be_bytes()));
    assert_eq!((r.corruptions, r.leaks, r.exit_code()), (0, 1, 3));
    // The COPIED flag cleared on a cluster whose refcount is 1.
    let r = run(&|f| put(f, l2, &(first & !OFLAG_COPIED).to_be_bytes()));
    assert_eq!((r.corruptions, r.leaks), (1, 0));
    assert!(r.findings.iter().any(|f| f.code == "copied-flag" && f.offset == Some(l2)));
}

#[test]
fn header_problems_are_refused_at_their_byte() {
    let w = Writer::new(16, 1 << 20, true, false, None).finish();
    let try_open = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut file = w.file.clone();
        f(&mut file);
        let files = Files::new([("h.qcow2", file)]);
        open_files(&files, "h.qcow2", None).map(|_| ())
    };
    assert!(try_open(&|_| {}).is_ok());
    let cases: [(&str, u64, &dyn Fn(&mut Vec<u8>)); 7] = [
        ("version 4", 4, &|f| put(f, 4, &4u32.to_be_bytes())),
        ("cluster bits 22", 20, &|f| put(f, 20, &22u32.to_be_bytes())),
        ("unknown incompatible bit", 72, &|f| put(f, 72, &(1u64 << 9).to_be_bytes())),
        ("L1 too small", 36, &|f| put(f, 36, &0u32.to_be_bytes())),
        ("L1 unaligned", 40, &|f| put(f, 40, &(w.l1 + 8).to_be_bytes())),
        ("zstd without the bit", 104, &|f| f[104] = 1),
        ("header_length", 100, &|f| put(f, 100, &96u32.to_be_bytes())),
    ];
    for (what, at, f) in cases {
        match try_open(f) {
            Err(crate::Error::Invalid { offset, .. }) | Err(crate::Error::Unsupported { offset, .. }) => assert_eq!(offset, at, "{}", what),
            other => panic!("{}: expected a refusal, got {:?}", what, other),
        }
    }
    // An unknown incompatible bit is named from the image's own feature name table.
    let named = try_open(&|f| {
        put(f, 72, &(1u64 << 9).to_be_bytes());
        put(f, 112, &super::header::EXT_FEATURE_TABLE.to_be_bytes());
        put(f, 116, &48u32.to_be_bytes());
        f[120] = 0;
        f[121] = 9;
        put(f, 122, b"time travel");
    });
    let m = format!("{}", named.unwrap_err());
    assert!(m.contains("bit 9 (\"time travel\")"), "{}", m);
    // The corrupt bit: QEMU opens read-only, so do we, and say so.
    let mut file = w.file.clone();
    put(&mut file, 72, &2u64.to_be_bytes());
    let files = Files::new([("h.qcow2", file)]);
    let r = open_files(&files, "h.qcow2", None).unwrap().top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "corrupt-bit"));
    let e = open_files(&Files::new([("h.qcow2", w.file[..50].to_vec())]), "h.qcow2", None).err().unwrap();
    assert!(matches!(e, crate::Error::PastEnd { what: "qcow2 header", .. }), "{:?}", e);
}

#[test]
fn encrypted_images_show_their_header_and_refuse_the_data() {
    let mut w = Writer::new(16, 1 << 20, true, false, None);
    w.write_cluster(0, 1);
    let mut w = w.finish();
    w.set(32, 1u64 << 32); // crypt_method = 1 (AES), l1_size kept
    put(&mut w.file, 36, &1u32.to_be_bytes());
    let files = Files::new([("e.qcow2", w.file)]);
    let c = open_files(&files, "e.qcow2", None).unwrap();
    assert!(c.top().header_fields().iter().any(|f| f.name == "crypt_method" && f.value.contains("AES")));
    let mut v = Vec::new();
    let m = format!("{}", c.map(0, 4096, &mut v).unwrap_err());
    assert!(m.contains("encrypted"), "{}", m);
    let r = c.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "encrypted" && f.severity == Severity::Warning));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    /// Any bytes written anywhere in a valid image: open, map, check, read, the host map
    /// and the header fields answer with a value or an error, never a panic.
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..40960, any::<u64>()), 1..8), ext in any::<bool>(), snap in any::<bool>()) {
        let bits = if ext { 14 } else { 12 };
        let cs = 1u64 << bits;
        let mut w = Writer::new(bits, 64 * cs, true, ext, Some(("b.raw", None)));
        w.write_cluster(0, 3);
        w.write_compressed(2 * cs, &pattern(cs, 5));
        if ext { w.write_sub(4 * cs, 3, 9); } else { w.zero_cluster(4 * cs, false); }
        if snap { w.snapshot("1", "s"); }
        w.write_cluster(cs, 4);
        let mut f = w.finish().file;
        for (at, v) in muts {
            let at = at.min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_be_bytes());
        }
        let files = Files::new([("m.qcow2", f), ("b.raw", vec![7u8; 4096])]);
        for view in [None, Some("1")] {
            if let Ok(chain) = open_files(&files, "m.qcow2", view) {
                let size = chain.virtual_size();
                let mut entries = Vec::new();
                let _ = chain.map(0, size.min(64 << 20), &mut entries);
                let _ = chain.top().check();
                let _ = chain.top().host_map(100);
                let _ = chain.top().header_fields();
                let _ = chain.top().regions();
                let mut buf = vec![0u8; 3 * cs as usize];
                if size >= buf.len() as u64 {
                    let _ = chain.read(0, &mut buf);
                    let _ = chain.read(size - buf.len() as u64, &mut buf);
                }
                let _ = crate::report::Report::new(&chain);
            }
        }
    }
}

/// The browser pays about 1.5 ms per read whatever its size: mapping, checking and
/// reading a whole image must take a handful of large reads, never one per entry or
/// per cluster.
#[test]
fn reads_are_few_and_large() {
    use core::cell::Cell;
    struct Counting(crate::io::MemFile, Cell<usize>);
    impl crate::io::ReadAt for Counting {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_at(&self, o: u64, b: &mut [u8]) -> crate::error::Result<()> {
            self.1.set(self.1.get() + 1);
            self.0.read_at(o, b)
        }
    }
    let cs = 4096u64;
    let size = 64 << 20;
    let mut w = Writer::new(12, size, true, false, None);
    let mut s = 99u64;
    for i in 0..3000 {
        let g = lcg(&mut s) % (size / cs) * cs;
        if i % 3 == 0 {
            w.write_compressed(g, &pattern(cs, i as u8 | 1));
        } else {
            w.write_cluster(g, i as u8 | 1);
        }
    }
    w.snapshot("1", "s");
    for i in 0..200 {
        w.write_cluster(lcg(&mut s) % (size / cs) * cs, i as u8 | 1);
    }
    let file = w.finish().file;
    let counting = alloc::sync::Arc::new(Counting(crate::io::MemFile(file), Cell::new(0)));
    let chain = Chain::open("r.qcow2", counting.clone(), None, &Files::default()).unwrap();
    let opened = counting.1.get();
    let mut n = 0;
    chain.for_each_entry(|_| Ok(n += 1)).unwrap();
    let mapped = counting.1.get() - opened;
    let r = chain.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:#?}", r.findings);
    let checked = counting.1.get() - opened - mapped;
    // Converting in the browser: stored runs are sliced from the file without reading
    // them; computed (compressed) runs are decoded through the chain.
    let mut computed = Vec::new();
    chain.plan(|p| Ok(if let crate::convert::Part::Computed { start, length } = p { computed.push((start, length)) })).unwrap();
    let before = counting.1.get();
    for (start, length) in computed {
        let mut buf = vec![0u8; length as usize];
        chain.read(start, &mut buf).unwrap();
    }
    let read = counting.1.get() - before;
    let _ = chain.top().host_map(1000).unwrap();
    let _ = crate::report::Report::new(&chain).unwrap();
    // Opening: probes (other formats look at the tail too), the header, the L1 table, the
    // snapshot table.
    assert!(opened <= 6 && mapped <= 4 && checked <= 12, "reads: open {}, map {}, check {}", opened, mapped, checked);
    // 1000 compressed clusters spread over 64 MiB: their data comes in a few big reads.
    assert!(read <= 40, "reading the disk took {} reads", read);
}
