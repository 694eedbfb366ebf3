//! cow and raw-cow images written from the spec tables (FORMATS.md 4.2-4.3, DECISIONS.md 3)
//! by the writer in sample.rs, with junk where a clear bit says the bytes are not valid, so a
//! wrong mapping shows in the bytes read back.
use alloc::{collections::BTreeMap, string::String, vec, vec::Vec};

use super::Layout;
use crate::chain::Chain;
use crate::model::{LayoutStatus, Severity};
use crate::testutil::Files;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

use super::sample::header;

/// Build an image of `size` bytes over `backing` (junk-free random base), setting random
/// bits; returns (files, expected guest bytes).
fn build(layout: Layout, size: u64, base_len: Option<u64>, seed: u64) -> (Files, Vec<u8>) {
    let mut s = seed;
    let sectors = size / 512;
    let mut files = BTreeMap::new();
    let base: Option<Vec<u8>> = base_len.map(|n| (0..n).map(|_| lcg(&mut s) as u8).collect());
    let mut expect = vec![0u8; (sectors * 512) as usize];
    if let Some(b) = &base {
        let n = b.len().min(expect.len());
        expect[..n].copy_from_slice(&b[..n]);
        files.insert(String::from("base.img"), b.clone());
    }
    let mut img = header(layout, if base.is_some() { "base.img" } else { "" }, "data.raw", size);
    let h = img.len();
    img.resize(h + sectors.div_ceil(8) as usize, 0);
    let data_start = (img.len() as u64).next_multiple_of(512) as usize;
    // Junk everywhere data could wrongly be read from.
    let mut raw: Vec<u8> = (0..sectors * 512).map(|_| 0xEE).collect();
    if !layout.raw_cow() {
        img.resize(data_start + (sectors * 512) as usize, 0xEE);
    }
    for sct in 0..sectors {
        if lcg(&mut s) % 3 == 0 {
            img[h + (sct / 8) as usize] |= 1 << (sct % 8);
            let fill = (lcg(&mut s) as u8) | 1;
            let r = (sct * 512) as usize..((sct + 1) * 512) as usize;
            expect[r.clone()].fill(fill);
            if layout.raw_cow() {
                raw[r].fill(fill);
            } else {
                img[data_start + r.start..data_start + r.end].fill(fill);
            }
        }
    }
    if layout.raw_cow() {
        files.insert(String::from("data.raw"), raw);
    }
    files.insert(String::from("top.cow"), img);
    (Files(files), expect)
}

fn open(files: &Files) -> crate::error::Result<Chain> {
    files.open("top.cow")
}

#[test]
fn every_layout_reads_back_the_model_through_its_chain() {
    for (i, layout) in Layout::ALL.into_iter().enumerate() {
        for base in [None, Some(100 * 512), Some(300 * 512 + 7)] {
            let (files, expect) = build(layout, 200 * 512 + 100, base, 11 + i as u64);
            let chain = open(&files).unwrap();
            assert_eq!(chain.top().info().format, if layout.raw_cow() { "raw-cow" } else { "cow" });
            assert_eq!(chain.top().info().variant, layout.describe());
            assert_eq!(chain.virtual_size(), 200 * 512, "size / 512 whole sectors");
            let mut got = vec![0u8; expect.len()];
            chain.read(0, &mut got).unwrap();
            assert!(got == expect, "{:?} base {:?}: guest bytes differ", layout, base);
            let expected_layout = if layout.raw_cow() { LayoutStatus::Reconstructed } else { LayoutStatus::Confirmed };
            assert_eq!(chain.top().info().layout, expected_layout);
            let r = chain.top().check().unwrap();
            assert!(r.findings.iter().any(|f| f.code == "size-unaligned"));
            assert_eq!(r.corruptions, 0);
        }
    }
}

#[test]
fn header_fields_stand_at_the_spec_offsets() {
    let h = header(Layout::Cow32, "b", "", 1 << 20);
    let files = Files::new([("top.cow", h)]);
    let chain = open(&files).unwrap();
    let fields = chain.top().header_fields();
    let at = |n: &str| fields.iter().find(|f| f.name == n).map(|f| (f.offset, f.size)).unwrap();
    assert_eq!(at("backing_file"), (8, 1024));
    assert_eq!(at("mtime"), (1032, 4));
    assert_eq!(at("size"), (1036, 8));
    assert_eq!(at("sectorsize"), (1044, 4));
    let mtime = fields.iter().find(|f| f.name == "mtime").unwrap();
    assert_eq!(mtime.raw, 1_311_033_600u32.to_be_bytes().to_vec());
    assert_eq!(mtime.value, "2011-07-19 00:00:00 UTC");
    // x86_64 raw-cow: padding at 2060, size at 2064, sectorsize at 2072.
    let h = header(Layout::RawCow64, "", "d.raw", 4096);
    let files = Files::new([("top.cow", h), ("d.raw", vec![0; 4096])]);
    let fields = open(&files).unwrap().top().header_fields();
    let at = |n: &str| fields.iter().find(|f| f.name == n).map(|f| (f.offset, f.size)).unwrap();
    assert_eq!((at("raw_file"), at("size"), at("sectorsize")), ((1032, 1024), (2064, 8), (2072, 4)));
}

#[test]
fn a_missing_raw_file_is_named_and_reads_fail_only_where_it_is_needed() {
    let (mut files, expect) = build(Layout::RawCowPacked, 64 * 512, Some(64 * 512), 5);
    files.0.remove("data.raw");
    let chain = open(&files).unwrap();
    let c = &chain.top().info().companions[0];
    assert_eq!((c.name.as_str(), c.offset, c.found.is_none()), ("data.raw", 1032, true));
    let r = chain.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "raw-file-missing" && f.message.contains("'data.raw'")));
    // Find a clear sector: it still reads from the backing file.
    let img = &files.0["top.cow"];
    let clear = (0..64).find(|s| img[2072 + s / 8] >> (s % 8) & 1 == 0).unwrap();
    let mut b = vec![0u8; 512];
    chain.read(clear as u64 * 512, &mut b).unwrap();
    assert_eq!(&b[..], &expect[clear * 512..clear * 512 + 512]);
    let set = (0..64).find(|s| img[2072 + s / 8] >> (s % 8) & 1 == 1).unwrap();
    let err = chain.read(set as u64 * 512, &mut b).unwrap_err();
    assert!(matches!(&err, crate::Error::MissingFile { name, offset: 1032, .. } if name == "data.raw"), "{:?}", err);
}

#[test]
fn damaged_headers_get_findings_or_clear_refusals() {
    let mut h = header(Layout::Cow64, "same", "", 16 * 512);
    h.resize(1056 + 1, 0xff); // 16 sectors: 2 bitmap bytes, the second one missing
    h[1036] = 1; // padding
    let files = Files::new([("top.cow", h.clone())]);
    let chain = open(&files).unwrap();
    let r = chain.top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().map(|f| (f.code, f.severity)).collect();
    assert!(codes.contains(&("bitmap-short", Severity::Warning)), "{:?}", codes);
    assert!(codes.contains(&("padding-nonzero", Severity::Warning)), "{:?}", codes);
    assert_eq!(r.allocated_clusters, 8);
    // sectorsize nowhere: refuse, saying where it was looked for.
    h[1048..1052].fill(0);
    let files = Files::new([("top.cow", h)]);
    match open(&files) {
        Err(crate::Error::Invalid { format: "cow", offset: 1044, message }) => assert!(message.contains("sectorsize")),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A size near 2^64 is a limit, not an allocation.
    let mut h = header(Layout::Cow64, "", "", 0);
    h[1040..1048].copy_from_slice(&u64::MAX.to_be_bytes());
    let files = Files::new([("top.cow", h)]);
    assert!(matches!(open(&files), Err(crate::Error::Limit { .. })));
}

/// Small images of every layout open and check clean; each is also a fuzz seed.
#[test]
fn fuzz_seeds_open_and_check_clean() {
    for (i, layout) in [Layout::Cow64, Layout::Cow32, Layout::RawCow64, Layout::RawCowPacked].into_iter().enumerate() {
        let (files, expect) = build(layout, 64 * 512, Some(20 * 512), 7 + i as u64);
        let chain = open(&files).unwrap();
        assert_eq!(chain.virtual_size(), expect.len() as u64);
        assert_eq!(chain.top().check().unwrap().corruptions, 0);
        let target = if layout.raw_cow() { "fmt_rawcow" } else { "fmt_cow" };
        let mut parts: Vec<&[u8]> = vec![&files.0["top.cow"]];
        parts.extend(files.0.iter().filter(|(n, _)| *n != "top.cow").map(|(_, b)| &b[..]));
        crate::testutil::fuzz_seed(target, &alloc::format!("{:?}", layout), &parts);
    }
}
