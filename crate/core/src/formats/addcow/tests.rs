//! add-cow images written from the spec tables (DECISIONS.md 2, FORMATS.md 2.2) by a writer
//! kept here. Junk (0xEE) fills the image file where the bitmap says 0, so reading the
//! wrong file shows in the bytes.
use alloc::{string::String, vec, vec::Vec};

use super::header::Generation;
use crate::chain::Chain;
use crate::model::{LayoutStatus, Severity};
use crate::testutil::Files;

pub(crate) use super::sample::{header, put};

fn lcg(s: &mut u64) -> u64 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *s >> 33
}

/// Image + random bits + backing shorter than the disk; returns files and expected bytes.
fn build(generation: Generation, cluster_bits: u32, disk: u64, seed: u64) -> (Files, Vec<u8>) {
    let mut s = seed;
    let cs = match generation {
        Generation::V11 => 65536,
        Generation::Acow => 1u64 << cluster_bits,
    };
    let clusters = disk.div_ceil(cs);
    let base: Vec<u8> = (0..disk / 2 + 100).map(|_| lcg(&mut s) as u8).collect();
    let mut img = header(generation, cluster_bits, "base.raw", "disk.raw", "", clusters, false);
    let hs = match generation {
        Generation::V11 => 4096,
        Generation::Acow => cs.max(4096) as usize,
    };
    let mut raw = vec![0xEEu8; disk as usize];
    let mut expect = vec![0u8; disk as usize];
    expect[..base.len()].copy_from_slice(&base);
    for c in 0..clusters {
        if lcg(&mut s) % 2 == 0 {
            img[hs + (c / 8) as usize] |= 1 << (c % 8);
            let r = (c * cs) as usize..((c + 1) * cs).min(disk) as usize;
            let fill = lcg(&mut s) as u8 | 1;
            raw[r.clone()].fill(fill);
            expect[r].fill(fill);
        }
    }
    let files = [("top.acow", img), ("disk.raw", raw), ("base.raw", base)];
    (Files::new(files), expect)
}

fn open(files: &Files) -> crate::error::Result<Chain> {
    files.open("top.acow")
}

fn read_all(c: &Chain) -> Vec<u8> {
    let mut b = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut b).unwrap();
    b
}

#[test]
fn both_generations_read_the_image_file_where_bits_are_set_and_the_backing_elsewhere() {
    for (generation, bits) in [(Generation::V11, 16), (Generation::Acow, 12), (Generation::Acow, 16)] {
        let disk = 40 * 65536 + 4096 + 512; // not a multiple of the cluster
        let (files, expect) = build(generation, bits, disk, bits as u64);
        let chain = open(&files).unwrap();
        assert_eq!(chain.virtual_size(), disk, "the disk is the image file's size");
        assert_eq!(chain.layers.len(), 2, "the backing file is the chain's second layer");
        assert!(read_all(&chain) == expect, "{:?}/{}: guest bytes differ", generation, bits);
        let status = if generation == Generation::V11 { LayoutStatus::Reconstructed } else { LayoutStatus::Confirmed };
        assert_eq!(chain.top().info().layout, status);
        let r = chain.top().check().unwrap();
        assert_eq!(r.corruptions, 0, "{:?}", r.findings);
        assert!(r.findings.iter().all(|f| f.severity == Severity::Info), "{:?}", r.findings);
        // The export plan reads the raw image file directly, never through wasm.
        let mut file_parts = 0;
        chain.plan(|p| Ok(file_parts += matches!(p, crate::convert::Part::File { file: 1, .. }) as u32)).unwrap();
        assert!(file_parts > 0);
    }
}

#[test]
fn all_allocated_ignores_bitmap_and_backing() {
    let (mut files, _) = build(Generation::Acow, 16, 8 * 65536, 3);
    let mut h = files.0["top.acow"].clone();
    put(&mut h, 32, &1u64.to_le_bytes());
    files.0.insert(String::from("top.acow"), h);
    files.0.remove("base.raw"); // not needed, so not missing
    let chain = open(&files).unwrap();
    assert!(chain.broken.is_none());
    assert!(read_all(&chain) == files.0["disk.raw"]);
    assert!(chain.top().check().unwrap().findings.iter().any(|f| f.code == "all-allocated"));
}

#[test]
fn a_nested_image_file_is_read_through_its_own_format() {
    let mut q = crate::formats::qed::tests::Writer::new(4096, 1, 4 * 65536, None);
    for c in 0..64 {
        q.write_cluster(c * 4096, c as u8 + 1);
    }
    let h = header(Generation::Acow, 16, "", "disk.qed", "qed", 4, false);
    let mut img = h;
    img[65536] = 0b0101; // clusters 0 and 2 from the image file
    let files = Files::new([("top.acow", img), ("disk.qed", q.file.clone())]);
    let chain = open(&files).unwrap();
    assert_eq!(chain.virtual_size(), 4 * 65536);
    let got = read_all(&chain);
    for c in 0..64usize {
        let want = if (c / 16) % 2 == 0 { c as u8 + 1 } else { 0 };
        assert!(got[c * 4096..(c + 1) * 4096].iter().all(|&b| b == want), "4 KiB block {}", c);
    }
    let mut computed = 0;
    chain.plan(|p| Ok(computed += matches!(p, crate::convert::Part::Computed { .. }) as u32)).unwrap();
    assert_eq!(computed, 2);
}

#[test]
fn a_missing_image_file_is_named_and_the_bitmap_still_maps() {
    let (mut files, _) = build(Generation::V11, 16, 16 * 65536, 9);
    files.0.remove("disk.raw");
    let chain = open(&files).unwrap();
    let c = &chain.top().info().companions[0];
    assert_eq!((c.role, c.name.as_str(), c.found.as_deref()), ("image file", "disk.raw", None));
    assert!(chain.virtual_size() >= 16 * 65536, "the bitmap's capacity stands in for the unknown size");
    let r = chain.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "image-file-missing" && f.message.contains("'disk.raw'")));
    let mut entries = Vec::new();
    chain.map(0, 16 * 65536, &mut entries).unwrap();
    assert!(entries.iter().any(|e| e.missing && e.present));
    let first_set = entries.iter().find(|e| e.missing).unwrap().start;
    let err = chain.read(first_set, &mut [0u8; 512]).unwrap_err();
    assert!(matches!(&err, crate::Error::MissingFile { name, .. } if name == "disk.raw"), "{:?}", err);
}

/// An image file of any size (a sparse one, as a host's), beside in-memory add-cow files.
struct WithSparse(Files, &'static str, crate::io::SparseFile);

impl crate::chain::Resolver for WithSparse {
    fn resolve(&self, name: &str, by: &str) -> Option<(String, alloc::sync::Arc<dyn crate::io::ReadAt>)> {
        if name == self.1 {
            return Some((String::from(name), alloc::sync::Arc::new(self.2.clone())));
        }
        self.0.resolve(name, by)
    }
}

#[test]
fn an_exabyte_image_file_under_a_short_bitmap_walks_in_one_step() {
    // Found by fmt_add-cow: an image file claiming 6 EB under a bitmap of 8 KiB took 175 s
    // to map into cells, in 180 million steps of half a million clusters each.
    let cs = 65536u64;
    let mut img = header(Generation::V11, 16, "", "disk.raw", "", 64, false);
    img[4096] = 0b0000_0101; // clusters 0 and 2 in the image file
    img.truncate(4096 + 1); // the rest of the bitmap, for 2^46 clusters, is past the file's end
    let size = 4u64 << 60;
    let image = crate::io::SparseFile { size, chunks: vec![(0, vec![7u8; 4096]), (2 * cs, vec![9u8; 512])] };
    let files = WithSparse(Files::new([("top.acow", img.clone())]), "disk.raw", image);
    let chain = Chain::open("top.acow", alloc::sync::Arc::new(crate::io::MemFile(img)), None, &files).unwrap();
    assert_eq!(chain.virtual_size(), size);
    let step = chain.walk_steps()(0);
    assert!(step >= size, "a walk's first step ends at {} of {}", step, size);
    // Data where the bits are set, split where the image file has host holes (zeros).
    let mut runs = Vec::new();
    chain.for_each_entry(|e| Ok(runs.push((e.start, e.length, e.data, e.zero)))).unwrap();
    assert_eq!(runs, vec![
        (0, 4096, true, false),
        (4096, cs - 4096, true, true),
        (cs, cs, false, true),
        (2 * cs, 4096, true, false),
        (2 * cs + 4096, cs - 4096, true, true),
        (3 * cs, size - 3 * cs, false, true),
    ]);
    crate::testutil::assert_steps_hold_their_budget("exabyte image file", &chain);
    let r = chain.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "bitmap-short"), "{:?}", r.findings);
}

#[test]
fn unknown_features_and_bad_names_are_refused_or_reported() {
    for (generation, at) in [(Generation::V11, 28usize), (Generation::V11, 36), (Generation::Acow, 24)] {
        let mut h = header(generation, 16, "", "d.raw", "", 8, false);
        h[at + 7] = 0x80;
        let files = Files::new([("top.acow", h), ("d.raw", vec![0; 65536])]);
        match open(&files) {
            Err(crate::Error::Unsupported { offset, message, .. }) => {
                assert_eq!(offset, if at == 36 { 28 } else { at as u64 });
                assert!(message.contains("unknown feature bits"));
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
    // Same name for backing and image: corruption. A stray byte in the name area: warning.
    let mut h = header(Generation::Acow, 16, "d.raw", "d.raw", "", 8, false);
    h[300] = 1;
    let files = Files::new([("top.acow", h), ("d.raw", vec![0; 65536])]);
    let r = open(&files).unwrap().top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().map(|f| (f.code, f.offset)).collect();
    assert!(codes.contains(&("name-invalid", Some(76))), "{:?}", codes);
    assert!(codes.contains(&("reserved-nonzero", Some(300))), "{:?}", codes);
    assert_eq!(r.exit_code(), 2);
    // An image name pointing outside the header: a clear refusal at the offset field.
    let mut h = header(Generation::V11, 16, "", "d.raw", "", 8, false);
    put(&mut h, 20, &5000u32.to_le_bytes());
    let files = Files::new([("top.acow", h)]);
    assert!(matches!(open(&files), Err(crate::Error::Invalid { offset: 20, .. })));
}

#[test]
fn an_image_file_that_is_the_add_cow_file_itself_is_a_clear_error() {
    let h = header(Generation::Acow, 16, "", "top.acow", "add-cow", 8, false);
    let files = Files::new([("top.acow", h)]);
    let chain = open(&files).unwrap();
    let c = &chain.top().info().companions[0];
    assert_eq!(c.found.as_deref(), Some("top.acow"));
    let r = chain.top().check().unwrap();
    let f = r.findings.iter().find(|f| f.code == "image-file-unreadable").expect("a finding");
    assert!(f.message.contains("names itself"), "{}", f.message);
}

#[test]
fn v11_header_fields_are_where_the_spec_says() {
    let h = header(Generation::V11, 16, "base.raw", "disk.raw", "", 8, false);
    let files = Files::new([("top.acow", h.clone()), ("disk.raw", vec![0; 65536]), ("base.raw", vec![])]);
    let fields = open(&files).unwrap().top().header_fields();
    let expect = [("magic", 0, 8), ("version", 8, 4), ("backing file name offset", 12, 4), ("backing file name size", 16, 4),
        ("image file name offset", 20, 4), ("image file name size", 24, 4), ("features", 28, 8), ("optional features", 36, 8),
        ("header pages", 44, 4), ("backing file format", 48, 16), ("image file format", 64, 16), ("backing file name", 80, 8), ("image file name", 88, 8)];
    for (name, off, size) in expect {
        let f = fields.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no field {}", name));
        assert_eq!((f.offset, f.size), (off, size), "{}", name);
        assert_eq!(&f.raw[..], &h[off as usize..(off + size) as usize], "{} raw bytes", name);
    }
}

/// Small images of both generations open and check clean; each is also a fuzz seed.
#[test]
fn fuzz_seeds_open_and_check_clean() {
    for (generation, bits) in [(Generation::V11, 16), (Generation::Acow, 12)] {
        let (files, expect) = build(generation, bits, 5 * 4096 + 512, 3);
        let chain = open(&files).unwrap();
        assert_eq!(chain.virtual_size(), expect.len() as u64);
        assert_eq!(chain.top().check().unwrap().corruptions, 0);
        let parts = [&files.0["top.acow"][..], &files.0["disk.raw"], &files.0["base.raw"]];
        crate::testutil::fuzz_seed("fmt_addcow", &alloc::format!("{:?}", generation), &parts);
    }
}
