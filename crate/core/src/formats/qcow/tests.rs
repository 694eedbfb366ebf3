//! qcow v1 images laid out as QEMU writes them (header, L1 right after it, L2 tables and
//! clusters appended at cluster-aligned ends, compressed data packed), read back through
//! the chain against a model, checked, and mutated at random.
use alloc::{format, string::String, vec, vec::Vec};
use proptest::prelude::*;

use crate::chain::Chain;
use crate::map::MapEntry;
use crate::testutil::Files;

pub(crate) use super::sample::{get64, put, Writer};

fn lcg(s: &mut u64) -> u64 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *s >> 33
}

fn open(files: &Files, top: &str) -> crate::error::Result<Chain> {
    files.open(top)
}

#[test]
fn writer_images_read_back_as_the_model_says() {
    for (bits, l2_bits) in [(12u32, 9u32), (9, 6), (16, 13)] {
        let cs = 1u64 << bits;
        let size = cs * 200 + 1000; // QEMU uses whole sectors: the disk is cs * 200 + 512
        let base: Vec<u8> = (0..cs * 50).map(|i| (i % 253) as u8 + 1).collect();
        let mut w = Writer::new(bits, l2_bits, size, Some("base.raw"));
        let disk = size / 512 * 512;
        let mut model = base.clone();
        model.resize(disk as usize, 0);
        let mut s = bits as u64;
        for _ in 0..200 {
            let c = lcg(&mut s) % disk.div_ceil(cs);
            let (a, b) = ((c * cs) as usize, ((c + 1) * cs).min(disk) as usize);
            let fill = lcg(&mut s) as u8 | 1;
            if lcg(&mut s) % 3 == 0 {
                let data: Vec<u8> = (0..cs).map(|i| ((i / 9) as u8).wrapping_add(fill)).collect();
                w.write_compressed(c * cs, &data);
                model[a..b].copy_from_slice(&data[..b - a]);
            } else {
                w.write_cluster(c * cs, fill);
                model[a..b].fill(fill);
            }
        }
        let files = Files::new([("t.qcow", w.file.clone()), ("base.raw", base)]);
        let chain = open(&files, "t.qcow").unwrap();
        let what = format!("cluster_bits {} l2_bits {}", bits, l2_bits);
        assert_eq!(chain.virtual_size(), disk, "{}", what);
        assert_eq!(chain.layers.len(), 2);
        let mut got = vec![0u8; disk as usize];
        chain.read(0, &mut got).unwrap();
        if let Some(i) = got.iter().zip(&model).position(|(x, y)| x != y) {
            panic!("{}: guest byte {} reads {:#x}, the model says {:#x}", what, i, got[i], model[i]);
        }
        let mut entries: Vec<MapEntry> = Vec::new();
        chain.for_each_entry(|e| Ok(entries.push(*e))).unwrap();
        assert!(entries.iter().any(|e| e.compressed) && entries.iter().any(|e| e.depth == 1));
        // qcow never frees: a compressed cluster written over leaves its old data behind,
        // as QEMU does. Nothing else may be unused, and nothing is corrupt.
        let r = chain.top().check().unwrap();
        assert_eq!(r.corruptions, 0, "{}: {:#?}", what, r.findings);
        assert!(r.compressed_clusters > 0);
        assert!(r.leaks <= w.overwritten_compressed, "{}: {} leaks, {} compressed clusters overwritten", what, r.leaks, w.overwritten_compressed);
    }
}

#[test]
fn bad_headers_and_entries() {
    let mut w = Writer::new(12, 9, 1 << 20, None);
    w.write_cluster(0, 5);
    let cases: [(usize, u8, u64); 3] = [(32, 8, 32), (32, 17, 32), (33, 14, 33)];
    for (at, v, off) in cases {
        let mut f = w.file.clone();
        f[at] = v;
        match open(&Files::new([("b.qcow", f)]), "b.qcow") {
            Err(crate::Error::Invalid { offset, .. }) => assert_eq!(offset, off),
            other => panic!("byte {} = {}: expected a refusal, got {:?}", at, v, other.map(|_| ())),
        }
    }
    let mut f = w.file.clone();
    put(&mut f, 36, &1u32.to_be_bytes()); // AES
    let c = open(&Files::new([("e.qcow", f)]), "e.qcow").unwrap();
    let mut v = Vec::new();
    assert!(format!("{}", c.map(0, 4096, &mut v).unwrap_err()).contains("encrypted"));
    // An L2 entry past the end: an invalid range naming the entry, and a corruption.
    let mut f = w.file.clone();
    let l2 = get64(&f, 48);
    put(&mut f, l2 + 8, &0x10_0000_0000u64.to_be_bytes());
    let c = open(&Files::new([("x.qcow", f)]), "x.qcow").unwrap();
    let mut entries = Vec::new();
    c.map(0, 1 << 20, &mut entries).unwrap();
    assert!(entries.iter().any(|e| e.invalid == Some(l2 + 8)));
    assert_eq!(c.top().check().unwrap().corruptions, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..12288, any::<u64>()), 1..6), big in any::<bool>()) {
        // Big: a 1 GiB disk whose L1 table (256 KiB) is still a small file to mutate.
        let mut w = Writer::new(9, 6, if big { 1 << 30 } else { 1 << 20 }, Some("b.raw"));
        w.write_cluster(0, 3);
        let data: Vec<u8> = (0..512).map(|i| (i / 7) as u8).collect();
        w.write_compressed(4096, &data);
        w.write_cluster(1 << 15, 4);
        let mut f = w.file.clone();
        for (at, v) in muts {
            let at = at.min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_be_bytes());
        }
        let files = Files::new([("m.qcow", f), ("b.raw", vec![1u8; 1000])]);
        if let Ok(chain) = open(&files, "m.qcow") {
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

#[test]
fn names() {
    let w = Writer::new(12, 9, 1 << 20, Some("base.img"));
    let c = open(&Files::new([("n.qcow", w.file)]), "n.qcow").unwrap();
    assert_eq!(c.top().info().backing.as_ref().map(|b| b.name.clone()), Some(String::from("base.img")));
    assert!(c.broken.is_some());
    assert!(c.top().header_fields().iter().any(|f| f.name == "backing file name" && f.value == "\"base.img\""));
}

