//! Parallels images made by qemu-img and qemu-io with several cluster sizes: `diskscope
//! convert` must write qemu-img convert's bytes, `diskscope map --json` must print qemu-img
//! map's array, and `diskscope check` must agree with qemu-img check on images damaged on
//! purpose. What qemu-img cannot make (the old "WithoutFreeSpace" magic, a Format Extension
//! with a dirty bitmap) is written here from docs/interop/parallels.txt into qemu-made
//! images, and QEMU must read those too.
mod common;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const CLUSTERS: [u64; 3] = [4 * KIB, 64 * KIB, MIB];

fn parallels(d: &Scratch, name: &str, size: u64, cluster: u64) -> PathBuf {
    create_with(d, name, size, "parallels", &format!("cluster_size={}", cluster))
}

fn put(p: &Path, at: u64, v: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(v, at).unwrap();
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn empty_images() {
    let d = Scratch::new();
    for cluster in CLUSTERS {
        for size in [3 * MIB + 512, 4 * MIB] {
            let name = format!("empty-{}-{}.hds", cluster, size);
            let img = parallels(&d, &name, size, cluster);
            let out = matches_qemu(&d, &img, &name);
            assert_eq!(file_len(&out), size);
        }
    }
}

#[test]
fn random_writes_zeroes_and_discards() {
    let seeds: u64 = std::env::var("DISKSCOPE_TEST_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for seed in 0x9a7_0000..0x9a7_0000 + seeds {
        let d = Scratch::new();
        let mut rng = Rng::new(seed);
        let pattern = pattern_file(&d, &mut rng);
        for cluster in CLUSTERS {
            let size = 3 * MIB + 4 * KIB + 512;
            let name = format!("random-{}.hds", cluster);
            let img = parallels(&d, &name, size, cluster);
            let mix = Mix { writes: 150, max_sectors: 48, zeroes: true, discards: true };
            qemu_io(&d, "parallels", &name, &random_commands(&mut rng, size, cluster, &pattern, mix));
            matches_qemu(&d, &img, &format!("{} (seed {:#x})", name, seed));
        }
    }
}

/// An image with clusters 0, 1, 2 written (64 KiB clusters; the BAT in clusters at 64).
fn three(d: &Scratch, name: &str) -> PathBuf {
    let img = parallels(d, name, 4 * MIB, 64 * KIB);
    qemu_io(d, "parallels", name, &["write -q -P 1 0 64k".into(), "write -q -P 2 64k 64k".into(), "write -q -P 3 128k 64k".into()]);
    img
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

#[test]
fn check_matches_qemu() {
    let d = Scratch::new();
    type Damage = fn(&Path);
    let cases: [(&str, Damage, i32); 6] = [
        ("clean", |_| {}, 0),
        ("leak-at-end", |p| set_len(p, file_len(p) + 65536 + 512), 3),
        ("not-closed", |p| put(p, 44, &0x746f_6e59u32.to_le_bytes()), 2),
        ("data-off-zero", |p| put(p, 48, &0u32.to_le_bytes()), 2),
        // An unreferenced cluster in the middle: QEMU does not count it.
        ("hole-in-middle", |p| put(p, 64 + 4, &0u32.to_le_bytes()), 0),
        // Cluster 3 takes cluster 2's place and cluster 2 the third host cluster: fragmented.
        ("fragmented", |p| {
            let b = std::fs::read(p).unwrap();
            let (e1, e2) = (le32(&b, 68), le32(&b, 72));
            put(p, 64 + 12, &e1.to_le_bytes());
            put(p, 64 + 4, &e2.to_le_bytes());
            put(p, 64 + 8, &0u32.to_le_bytes());
        }, 0),
    ];
    for (name, damage, code) in cases {
        let img = three(&d, &format!("{}.hds", name));
        damage(&img);
        let ((qc, q), (oc, o)) = checks(&d, &img, "parallels");
        assert_eq!(qc, Some(code), "{}: qemu-img check: {}", name, q);
        assert_eq!(oc, qc, "{}: exit code\nours: {}\nqemu: {}", name, o, q);
        for key in ["corruptions", "leaks", "total-clusters", "allocated-clusters", "fragmented-clusters", "check-errors"] {
            assert_eq!(num(&o, key), num(&q, key), "{}: {}\nours: {}\nqemu: {}", name, key, o, q);
        }
    }
}

/// qemu-img only writes "WithouFreSpacExt"; the older magic keeps the BAT in sectors and
/// only the low 32 bits of nb_sectors. Rewrite a qemu-made image so, and both must read it.
#[test]
fn old_magic_images() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x01d);
    let pattern = pattern_file(&d, &mut rng);
    for cluster in [4 * KIB, 64 * KIB] {
        let size = 2 * MIB + 512;
        let name = format!("old-{}.hds", cluster);
        let img = parallels(&d, &name, size, cluster);
        qemu_io(&d, "parallels", &name, &random_commands(&mut rng, size, cluster, &pattern, Mix { writes: 60, max_sectors: 32, zeroes: false, discards: false }));
        let mut b = std::fs::read(&img).unwrap();
        b[..16].copy_from_slice(b"WithoutFreeSpace");
        let n = le32(&b, 32) as usize;
        for i in 0..n {
            let e = le32(&b, 64 + 4 * i);
            b[64 + 4 * i..68 + 4 * i].copy_from_slice(&(e * (cluster / 512) as u32).to_le_bytes());
        }
        // High bits of nb_sectors are ignored with this magic.
        b[40..44].copy_from_slice(&7u32.to_le_bytes());
        std::fs::write(&img, &b).unwrap();
        matches_qemu(&d, &img, &name);
        let info = diskscope(&[&"info", &img, &"--json"]).ok().json();
        assert_eq!(info["virtual-size"].as_u64(), Some(size), "{}", info);
    }
}

/// A Format Extension with a dirty bitmap, written into a qemu-made image: QEMU reads the
/// extension when it opens the image read-only and refuses it if the MD5 or the layout is
/// wrong, so qemu-img convert succeeding is QEMU agreeing with our writer; diskscope must
/// read the same bytes and show the bitmap's dirty ranges.
#[test]
fn dirty_bitmap_extension() {
    let d = Scratch::new();
    let cluster = 64 * KIB;
    let size = 4 * MIB;
    let img = parallels(&d, "bm.hds", size, cluster);
    qemu_io(&d, "parallels", "bm.hds", &["write -q -P 7 128k 64k".into()]);
    let mut b = std::fs::read(&img).unwrap();
    let ext_at = b.len();
    let bits_at = ext_at + cluster as usize;
    b.resize(bits_at + cluster as usize, 0);
    // 64 KiB granules (128 sectors): 64 bits; granules 2, 3 and 40 dirty.
    for g in [2usize, 3, 40] {
        b[bits_at + g / 8] |= 1 << (g % 8);
    }
    let mut feat = Vec::new();
    feat.extend_from_slice(&0x2038_5FAE_252C_B34Au64.to_le_bytes());
    feat.extend_from_slice(&0u64.to_le_bytes());
    feat.extend_from_slice(&40u32.to_le_bytes());
    feat.extend_from_slice(&0u32.to_le_bytes());
    feat.extend_from_slice(&(size / 512).to_le_bytes());
    feat.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00]);
    feat.extend_from_slice(&128u32.to_le_bytes());
    feat.extend_from_slice(&1u32.to_le_bytes());
    feat.extend_from_slice(&((bits_at / 512) as u64).to_le_bytes());
    feat.extend_from_slice(&[0u8; 24]);
    b[ext_at..ext_at + 8].copy_from_slice(&0xAB23_4CEF_23DC_EA87u64.to_le_bytes());
    b[ext_at + 24..ext_at + 24 + feat.len()].copy_from_slice(&feat);
    let body = d.path("ext-body.bin");
    std::fs::write(&body, &b[ext_at + 24..ext_at + cluster as usize]).unwrap();
    let sum = std::process::Command::new("md5sum").arg(&body).output().unwrap();
    let hex = String::from_utf8_lossy(&sum.stdout)[..32].to_string();
    for i in 0..16 {
        b[ext_at + 8 + i] = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    b[56..64].copy_from_slice(&((ext_at / 512) as u64).to_le_bytes());
    std::fs::write(&img, &b).unwrap();
    matches_qemu(&d, &img, "image with a dirty bitmap extension");
    let info = diskscope(&[&"info", &img, &"--json"]).ok().json();
    let fields = info["header-fields"].as_array().unwrap();
    let ranges = fields.iter().find(|f| f["name"] == "feature 0 dirty ranges").unwrap_or_else(|| panic!("no dirty ranges in {}", info));
    assert_eq!(ranges["value"], "3 granules dirty (196608 bytes): 0x20000-0x40000, 0x280000-0x290000", "{}", info);
    let (_, (code, o)) = checks(&d, &img, "parallels");
    assert_eq!(code, Some(0), "the extension clusters are not leaks: {}", o);
}
