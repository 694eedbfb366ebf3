//! Parallels images built from docs/interop/parallels.txt by the writer in sample.rs (both
//! magics, a Format Extension with a dirty bitmap), read back through the chain, checked,
//! and mutated at random to prove no input makes the reader panic.
use alloc::{vec, vec::Vec};
use proptest::prelude::*;

use super::header::*;
use crate::chain::Chain;
use crate::testutil::Files;

pub(crate) use super::sample::Writer;

fn open(f: &[u8]) -> crate::error::Result<Chain> {
    Files::new([("a.hds", f.to_vec())]).open("a.hds")
}

#[test]
fn both_magics_read_as_written_and_check_clean() {
    for ext_magic in [true, false] {
        let (cs, size) = (4096u64, 20 * 4096 + 1024);
        let mut w = Writer::new(size, cs, ext_magic);
        let mut model = vec![0u8; size as usize];
        for (i, fill) in [(3u64, 0x33u8), (0, 0x10), (5, 0x55), (4, 0x44), (20, 0x20)] {
            w.write(i, fill);
            let a = (i * cs) as usize;
            let b = ((i + 1) * cs).min(size) as usize;
            model[a..b].fill(fill);
        }
        let c = open(&w.file).unwrap();
        assert_eq!(c.virtual_size(), size);
        let mut got = vec![0u8; size as usize];
        c.read(0, &mut got).unwrap();
        assert!(got == model, "ext_magic {}", ext_magic);
        let r = c.top().check().unwrap();
        assert_eq!((r.corruptions, r.leaks, r.allocated_clusters, r.total_clusters), (0, 0, 5, 21), "{:?}", r.findings);
        // Host order 3, 0, 5, 4, 20; in guest order 0 | 3, 4, 5 | 20 (an empty entry breaks
        // the run, as QEMU counts): 4 after 3 and 5 after 4 are not where they would follow.
        assert_eq!(r.fragmented_clusters, 2);
    }
}

#[test]
fn header_fields_have_their_offsets_and_values() {
    let w = Writer::new(1 << 20, 65536, true);
    let c = open(&w.file).unwrap();
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {}", n)).clone();
    assert_eq!((get("magic").offset, get("magic").size, get("magic").value.as_str()), (0, 16, "\"WithouFreSpacExt\""));
    assert_eq!((get("version").offset, get("version").value.as_str()), (16, "2"));
    assert_eq!((get("tracks").offset, get("tracks").value.as_str()), (28, "128 sectors = 64 KiB (65536 bytes)"));
    assert_eq!((get("bat_entries").offset, get("bat_entries").value.as_str()), (32, "16"));
    assert_eq!((get("nb_sectors").offset, get("nb_sectors").size), (36, 8));
    assert_eq!(get("nb_sectors").raw, 2048u64.to_le_bytes().to_vec());
    assert_eq!((get("data_off").offset, get("data_off").value.as_str()), (48, "128 sectors = byte 65536"));
    assert_eq!((get("ext_off").offset, get("ext_off").value.as_str()), (56, "0 (no Format Extension)"));
    let i = c.top().info();
    assert_eq!((i.format, i.virtual_size, i.cluster_size, i.dirty), ("parallels", 1 << 20, 65536, false));
}

#[test]
fn the_dirty_bitmap_extension_is_shown() {
    let mut w = Writer::new(1 << 20, 4096, true);
    w.write(1, 0x11);
    // 64 KiB granules: 16 bits; dirty 0, 1, 2 and 9.
    let ext_at = w.add_bitmap([0x42; 16], 128, &[0, 1, 2, 9]);
    let c = open(&w.file).unwrap();
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {} in {:?}", n, fields)).clone();
    assert_eq!(get("extension magic").offset, ext_at);
    assert!(get("extension checksum").value.ends_with("(matches)"), "{}", get("extension checksum").value);
    assert!(get("feature 0").value.starts_with("dirty bitmap"), "{}", get("feature 0").value);
    assert!(get("feature 0 bitmap").value.contains("id 42424242-4242-4242-4242-424242424242"), "{}", get("feature 0 bitmap").value);
    assert_eq!(get("feature 0 dirty ranges").value, "4 granules dirty (262144 bytes): 0x0-0x30000, 0x90000-0xa0000");
    assert!(get("feature 1").value.starts_with("end of features"));
    let r = c.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.findings);
    assert!(c.top().regions().unwrap().iter().any(|g| g.name.starts_with("dirty bitmap")));
    // One flipped byte in the extension: the MD5 no longer matches, and check says so.
    let mut bad = w.file.clone();
    bad[ext_at as usize + 4000] ^= 1;
    let r = open(&bad).unwrap().top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "format-extension" && f.offset == Some(ext_at + 8)), "{:?}", r.findings);
}

/// An image with a Format Extension and its dirty bitmap as a fuzz seed (scripts/fuzz.sh):
/// without one, the fuzzer has to find the extension's magic and offset on its own.
#[test]
fn fuzz_seeds_with_a_dirty_bitmap() {
    for cluster in [4096u64, 65536] {
        let mut w = Writer::new(4 << 20, cluster, true);
        w.write(3, 0x33);
        w.add_bitmap([7; 16], 16, &[0, 5, 63]);
        let c = open(&w.file).unwrap();
        assert!(c.top().header_fields().iter().any(|f| f.name == "feature 0" && f.value.starts_with("dirty bitmap")));
        crate::testutil::fuzz_seed("fmt_parallels", &alloc::format!("dirty-bitmap-{}", cluster), &[&w.file]);
    }
}

#[test]
fn check_counts_what_qemu_counts() {
    let mk = || {
        let mut w = Writer::new(16 * 65536, 65536, true);
        for i in 0..3 {
            w.write(i, i as u8 + 1);
        }
        w
    };
    // Leaked space at the end: one cluster (and a half, rounded up).
    let mut w = mk();
    w.file.extend(vec![0u8; 65536 + 100]);
    let r = open(&w.file).unwrap().top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks, r.exit_code()), (0, 2, 3), "{:?}", r.findings);
    // The in-use flag.
    let mut w = mk();
    w.file[at::INUSE..at::INUSE + 4].copy_from_slice(&INUSE_DIRTY.to_le_bytes());
    let c = open(&w.file).unwrap();
    assert!(c.top().info().dirty);
    assert_eq!(c.top().check().unwrap().corruptions, 1);
    // Two entries for one cluster, and a cluster past the end of the file.
    let mut w = mk();
    let first = w.entry(0);
    w.set_entry(2, first);
    w.set_entry(5, 1000);
    let c = open(&w.file).unwrap();
    let r = c.top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().map(|f| (f.code, f.offset)).collect();
    assert!(codes.contains(&("cluster-shared", Some(64 + 8))), "{:?}", codes);
    assert!(codes.contains(&("cluster-outside", Some(64 + 20))), "{:?}", codes);
    assert_eq!(r.corruptions, 2);
    // The cluster past the end is an invalid mapping naming its entry.
    let mut buf = vec![0u8; 512];
    let e = c.read(5 * 65536, &mut buf).unwrap_err();
    assert!(matches!(e, crate::Error::CorruptMapping { offset: 84, .. }), "{:?}", e);
    // A data_off inside the BAT.
    let mut w = mk();
    w.file[at::DATA_OFF..at::DATA_OFF + 4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(open(&w.file).unwrap().top().check().unwrap().corruptions, 1);
}

#[test]
fn bad_headers_are_refused_with_the_offset_of_the_field() {
    let w = Writer::new(1 << 20, 65536, true);
    for (off, val) in [(at::VERSION, 3u32), (at::TRACKS, 0), (at::TRACKS, 1 << 23), (at::BAT_ENTRIES, 1 << 30)] {
        let mut f = w.file.clone();
        f[off..off + 4].copy_from_slice(&val.to_le_bytes());
        match open(&f) {
            // A wrong version is not probed as Parallels at all: the file is not recognised.
            Err(crate::Error::Invalid { offset, .. }) => assert_eq!(offset, off as u64),
            Err(crate::Error::UnknownFormat { .. }) if off == at::VERSION => {}
            other => panic!("field at {}: expected a refusal, got {:?}", off, other.map(|_| ())),
        }
    }
}

#[test]
fn opening_and_mapping_takes_one_read_after_probing() {
    let mut w = Writer::new(64 * 65536, 65536, true);
    for i in (0..64).step_by(3) {
        w.write(i, 1);
    }
    // Two reads to probe, one for the header and the BAT.
    assert_eq!(crate::formats::vdi::tests::reads_to_map("a.hds", &w.file), 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..12288, any::<u64>()), 1..8), ext_magic in any::<bool>(), bitmap in any::<bool>()) {
        let mut w = Writer::new(64 * 4096, 4096, ext_magic);
        w.write(0, 1);
        w.write(7, 2);
        if bitmap {
            w.add_bitmap([1; 16], 8, &[0, 5]);
        }
        let mut f = w.file.clone();
        for (at, v) in muts {
            let at = at.min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        if let Ok(chain) = open(&f) {
            let size = chain.virtual_size();
            let mut entries = Vec::new();
            let _ = chain.map(0, size.min(64 << 20), &mut entries);
            let _ = chain.top().check();
            let mut buf = vec![0u8; 4096];
            if size >= 4096 {
                let _ = chain.read(0, &mut buf);
                let _ = chain.read(size - 4096, &mut buf);
            }
            let _ = crate::report::Report::new(&chain);
        }
    }
}
