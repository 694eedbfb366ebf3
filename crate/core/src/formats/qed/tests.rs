//! QED built from the spec tables by the writer in sample.rs, read back through the chain, and
//! mutated at random to prove no input makes the reader panic.
use alloc::{string::String, vec, vec::Vec};
use proptest::prelude::*;

use crate::chain::Chain;
use crate::map::MapEntry;
use crate::testutil::Files;

pub(crate) use super::sample::Writer;

fn open(img: &[u8], backing: Option<(&str, Vec<u8>)>) -> crate::error::Result<Chain> {
    let mut files = Files::new([("t.qed", img.to_vec())]);
    if let Some((n, b)) = backing {
        files.0.insert(String::from(n), b);
    }
    files.open("t.qed")
}

#[test]
fn writer_images_read_back_as_the_model_says() {
    let (cs, size) = (4096u64, 3 * 1024 * 1024 + 4096 + 512);
    let base: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8 + 1).collect();
    let mut w = Writer::new(cs, 1, size, Some("base.raw"));
    let mut model: Vec<u8> = base.clone();
    model.resize(size as usize, 0);
    let mut seed = 7u64;
    for _ in 0..200 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let c = (seed >> 33) % size.div_ceil(cs);
        let fill = (seed >> 20) as u8 | 1;
        let (a, b) = ((c * cs) as usize, (((c + 1) * cs).min(size)) as usize);
        if seed & 3 == 0 {
            w.zero_cluster(c * cs);
            model[a..b].fill(0);
        } else {
            w.write_cluster(c * cs, fill);
            model[a..b].fill(fill);
        }
    }
    let chain = open(&w.file, Some(("base.raw", base))).unwrap();
    assert_eq!(chain.virtual_size(), size);
    let mut got = vec![0u8; size as usize];
    chain.read(0, &mut got).unwrap();
    assert!(got == model, "guest bytes differ from the model");
    // The map covers the disk exactly, in order, and each data run reads what it says.
    let mut entries: Vec<MapEntry> = Vec::new();
    chain.for_each_entry(|e| Ok(entries.push(*e))).unwrap();
    let mut pos = 0;
    for e in &entries {
        assert_eq!(e.start, pos);
        pos += e.length;
        if e.depth == 0 && e.data {
            let off = e.offset.unwrap() as usize;
            assert_eq!(&w.file[off..off + e.length as usize], &model[e.start as usize..(e.start + e.length) as usize]);
        }
    }
    assert_eq!(pos, size);
    let r = chain.top().check().unwrap();
    assert!(w.leaked > 0, "the sequence should zero some written clusters");
    assert_eq!((r.corruptions, r.leaks), (0, w.leaked), "{:?}", r.findings);
}

#[test]
fn check_finds_what_was_broken_on_purpose() {
    let mut w = Writer::new(4096, 1, 1 << 20, None);
    w.write_cluster(0, 1);
    w.write_cluster(4096, 2);
    let l2 = w.get(w.l1);
    let first = w.get(l2);
    w.set(l2 + 8, first); // two entries share a cluster
    w.set(l2 + 16, 12345); // not aligned
    w.append(2); // two leaked clusters at the end
    let r = open(&w.file, None).unwrap().top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().map(|f| (f.code, f.offset)).collect();
    assert!(codes.contains(&("cluster-shared", Some(l2 + 8))), "{:?}", codes);
    assert!(codes.contains(&("l2-entry-invalid", Some(l2 + 16))), "{:?}", codes);
    assert_eq!(r.corruptions, 2);
    // The cluster that entry 1 used to point at is now unreferenced, plus the two appended.
    assert_eq!(r.leaks, 3);
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn bad_headers_are_refused_with_the_offset_of_the_field() {
    let w = Writer::new(4096, 1, 1 << 20, None);
    let cases: [(usize, u64, u64); 5] = [(4, 1000, 4), (8, 3, 8), (16, 0x100, 16), (48, 1000, 48), (40, 4097, 40)];
    for (at, val, off) in cases {
        let mut f = w.file.clone();
        let width = if at >= 16 { 8 } else { 4 };
        f[at..at + width].copy_from_slice(&val.to_le_bytes()[..width]);
        match open(&f, None) {
            Err(crate::Error::Invalid { offset, .. }) | Err(crate::Error::Unsupported { offset, .. }) => assert_eq!(offset, off),
            other => panic!("field at {}: expected a refusal, got {:?}", at, other.map(|_| ())),
        }
    }
    let e = open(&w.file[..40], None).err().unwrap();
    assert!(matches!(e, crate::Error::PastEnd { what: "QED header", .. }), "{:?}", e);
}

#[test]
fn an_invalid_l1_entry_is_a_finding_and_a_clear_read_error() {
    let mut w = Writer::new(4096, 1, 4 << 20, None);
    w.write_cluster(0, 9);
    w.set(w.l1 + 8, 0xdead_beef_000); // far past the end
    let chain = open(&w.file, None).unwrap();
    let mut entries = Vec::new();
    chain.map(0, 4 << 20, &mut entries).unwrap();
    assert!(entries.iter().any(|e| e.invalid == Some(w.l1 + 8)));
    let mut buf = vec![0u8; 4096];
    let err = chain.read(2 << 20, &mut buf).unwrap_err();
    assert!(matches!(err, crate::Error::CorruptMapping { offset, .. } if offset == w.l1 + 8), "{:?}", err);
    assert_eq!(chain.top().check().unwrap().corruptions, 1);
}

#[test]
fn an_eight_petabyte_empty_disk_maps_and_draws() {
    // 1 MiB clusters, 16-cluster tables: one L1 entry covers 2 TiB, 4096 of them 8 PiB.
    let w = Writer::new(1 << 20, 16, 1 << 53, None);
    let chain = open(&w.file, None).unwrap();
    let cells = chain.cells(1 << 20).unwrap();
    assert_eq!(cells.classes.len(), 1 << 20);
    assert_eq!(cells.totals[crate::map::class::UNALLOCATED as usize], 1 << 53);
    let mut runs = 0;
    chain.for_each_entry(|_| Ok(runs += 1)).unwrap();
    assert_eq!(runs, 1, "one unallocated run, however the walk was windowed");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    /// Any bytes written anywhere in a valid image: open, map, check and read answer with a
    /// value or an error, never a panic, and never read outside the file.
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..20480, any::<u64>()), 1..8), big in any::<bool>()) {
        let mut w = Writer::new(4096, 1, if big { 1 << 40 } else { 1 << 20 }, None);
        w.write_cluster(0, 3);
        w.write_cluster(8192, 4);
        let mut f = w.file.clone();
        for (at, v) in muts {
            let at = at.min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        if let Ok(chain) = open(&f, None) {
            let size = chain.virtual_size();
            let mut entries = Vec::new();
            let _ = chain.map(0, size.min(64 << 20), &mut entries);
            let _ = chain.top().check();
            let mut buf = vec![0u8; 8192];
            if size >= 8192 {
                let _ = chain.read(0, &mut buf);
                let _ = chain.read(size - 8192, &mut buf);
            }
            let _ = crate::report::Report::new(&chain);
        }
    }
}

/// A QED image in a sparse host file: data clusters written 4 KiB at a time, and a stretch
/// of clusters allocated but never written (host holes). The walk splits each cluster where
/// its host bytes turn to holes, as qemu-img map does, without stepping any finer for it;
/// compare neither reads nor compares the holes.
#[test]
fn data_clusters_over_host_holes() {
    use crate::io::SparseFile;
    use crate::testutil::Counted;
    use alloc::sync::Arc;
    use core::cell::Cell;
    let (cs, size) = (64u64 << 10, 64u64 << 40);
    let mut w = Writer::new(cs, 4, size, None);
    let mut model = SparseFile { size, chunks: Vec::new() };
    for i in 0..64 {
        w.write_bytes(i * cs, &[0xab; 4096]);
        model.poke(i * cs, &[0xab; 4096]);
    }
    let unwritten = 1u64 << 30;
    for i in 0..256 {
        w.write_bytes(unwritten + i * cs, &[]);
    }
    let qed = Arc::new(Counted(SparseFile::decode(&SparseFile::encode(&w.file)).unwrap(), Cell::new(0)));
    let chain = Chain::open("t.qed", qed.clone(), None, &Files::default()).unwrap();

    let (steps, _) = crate::testutil::walk(&chain);
    let per_step = crate::limits::MAP_WINDOW_RUNS * cs;
    assert_eq!(steps, size / per_step, "steps of {} clusters, as QED's runs are; not of 4 KiB host blocks", crate::limits::MAP_WINDOW_RUNS);
    let mut runs = Vec::new();
    chain.for_each_entry(|e| Ok(runs.push((e.start, e.length, e.data, e.zero)))).unwrap();
    let mut want = Vec::new();
    for i in 0..64 {
        want.extend([(i * cs, 4096, true, false), (i * cs + 4096, cs - 4096, true, true)]);
    }
    want.push((64 * cs, unwritten - 64 * cs, false, true));
    want.push((unwritten, 256 * cs, true, true));
    want.push((unwritten + 256 * cs, size - unwritten - 256 * cs, false, true));
    assert_eq!(runs, want);

    // Against a raw disk of the same bytes, and of one byte more in the unwritten clusters.
    let raw = |m: SparseFile| Chain::open("m.raw", Arc::new(m), Some("raw"), &Files::default()).unwrap();
    qed.1.set(0);
    let same = crate::compare::compare(&chain, &raw(model.clone()), &mut |_, _| true).unwrap();
    assert!(same.identical, "{:?}", same);
    assert!(qed.1.get() < 1 << 20, "{} bytes read: the unwritten clusters' holes were read", qed.1.get());
    // Nor compares them: a MiB chunk is skipped where both sides' runs there are host holes.
    let runs = crate::compare::nonzero_runs(&chain, 0, size).unwrap();
    let holes = |a: u64, b: u64| crate::compare::all_holes(&chain, &runs, a, b).unwrap();
    assert!(holes(unwritten - (1 << 20), unwritten + (1 << 20)) && holes(unwritten + 255 * cs, unwritten + 257 * cs));
    assert!(!holes(0, 1 << 20) && !holes(63 * cs + 4095, 64 << 20), "a stored byte in reach");
    model.poke(unwritten + 100 * cs + 777, &[1]);
    let differs = crate::compare::compare(&chain, &raw(model), &mut |_, _| true).unwrap();
    assert_eq!(differs.mismatch_offset, Some(unwritten + 100 * cs + 512));
}
