//! VDI images made by qemu-img and qemu-io, dynamic and static: `diskscope convert` must
//! write qemu-img convert's bytes, `diskscope map --json` must print qemu-img map's array,
//! and `diskscope check` must exit as qemu-img check does on images damaged on purpose.
//! A differencing child (which qemu-img cannot make) is written from the header layout
//! over a qemu-made parent and must find that parent by UUID alone.
mod common;
use std::path::Path;

use common::*;

const BLOCK: u64 = MIB;
const SIZES: [u64; 2] = [3 * MIB + 512, 5 * MIB];

fn vdi(d: &Scratch, name: &str, size: u64, fixed: bool) -> std::path::PathBuf {
    create_with(d, name, size, "vdi", if fixed { "static=on" } else { "" })
}

fn le32(p: &Path, at: u64) -> u32 {
    let b = std::fs::read(p).unwrap();
    u32::from_le_bytes(b[at as usize..at as usize + 4].try_into().unwrap())
}

fn write_bytes(p: &Path, at: u64, v: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(v, at).unwrap();
}

#[test]
fn empty_images() {
    let d = Scratch::new();
    for fixed in [false, true] {
        for size in SIZES {
            let name = format!("empty-{}-{}.vdi", if fixed { "static" } else { "dynamic" }, size);
            let img = vdi(&d, &name, size, fixed);
            let out = matches_qemu(&d, &img, &name);
            assert_eq!(file_len(&out), size);
        }
    }
}

#[test]
fn random_writes_zeroes_and_discards() {
    let seeds: u64 = std::env::var("DISKSCOPE_TEST_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for seed in 0x7d1_0000..0x7d1_0000 + seeds {
        let d = Scratch::new();
        let mut rng = Rng::new(seed);
        let pattern = pattern_file(&d, &mut rng);
        for fixed in [false, true] {
            for size in SIZES {
                let name = format!("random-{}-{}.vdi", fixed, size);
                let img = vdi(&d, &name, size, fixed);
                let mix = Mix { writes: 150, max_sectors: 64, zeroes: true, discards: true };
                qemu_io(&d, "vdi", &name, &random_commands(&mut rng, size, BLOCK, &pattern, mix));
                matches_qemu(&d, &img, &format!("{} (seed {:#x})", name, seed));
            }
        }
    }
}

fn counts(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key).and_then(|x| x.as_u64()).unwrap_or(0)
}

/// Blocks 0, 1 and 3 written; the map at offset_bmap (512 for qemu-img's images).
fn damaged(d: &Scratch, name: &str) -> std::path::PathBuf {
    let img = vdi(d, name, 4 * MIB, false);
    qemu_io(d, "vdi", name, &["write -q -P 0x11 0 4k".into(), "write -q -P 0x22 1M 4k".into(), "write -q -P 0x33 3M 4k".into()]);
    assert_eq!(le32(&img, 340), 512, "qemu-img puts the block map at 512");
    img
}

#[test]
fn check_exit_codes_match_qemu() {
    let d = Scratch::new();
    type Damage = fn(&Path);
    let cases: [(&str, Damage, i32, u64); 4] = [
        ("clean", |_| {}, 0, 0),
        // Block 3 points at data block 0, which block 0 uses.
        ("shared", |p| write_bytes(p, 512 + 12, &0u32.to_le_bytes()), 2, 1),
        // Block 2 (unallocated) points past blocks_in_image.
        ("too-large", |p| write_bytes(p, 512 + 8, &100u32.to_le_bytes()), 2, 1),
        // The header counts one block fewer than the map holds.
        ("count", |p| write_bytes(p, 388, &2u32.to_le_bytes()), 2, 1),
    ];
    for (name, damage, code, corruptions) in cases {
        let img = damaged(&d, &format!("{}.vdi", name));
        damage(&img);
        let ((qc, qj), (oc, oj)) = checks(&d, &img, "vdi");
        assert_eq!((qc, counts(&qj, "corruptions")), (Some(code), corruptions), "{}: qemu-img check says {}", name, qj);
        assert_eq!((oc, counts(&oj, "corruptions")), (qc, counts(&qj, "corruptions")), "{}: ours {}\nqemu {}", name, oj, qj);
    }
}

/// A VirtualBox-style differencing child over a qemu-made parent: same geometry, type 4,
/// uuid_link = the parent's uuid_image. It names no file: diskscope finds the parent in
/// the child's folder by UUID, and reads the child's blocks over the parent's.
#[test]
fn differencing_child_finds_its_parent_by_uuid() {
    let d = Scratch::new();
    let size = 4 * MIB;
    let parent = vdi(&d, "base.vdi", size, false);
    qemu_io(&d, "vdi", "base.vdi", &["write -q -P 0x41 0 2M".into(), "write -q -P 0x42 3M 1M".into()]);
    // A decoy with another UUID must not be taken for the parent.
    vdi(&d, "decoy.vdi", size, false);
    std::fs::create_dir_all(d.path("vm")).unwrap();
    let child = d.path("vm/child.vdi");
    let mut c = std::fs::read(&parent).unwrap();
    let header_and_map = 512 + 512;
    c.truncate(header_and_map);
    let uuid_image: Vec<u8> = c[392..408].to_vec();
    c[76..80].copy_from_slice(&4u32.to_le_bytes()); // differencing
    c[424..440].copy_from_slice(&uuid_image); // uuid_link = the parent's uuid_image
    c[392..408].copy_from_slice(&[0x5a; 16]); // the child's own uuid
    for i in 0..4usize {
        c[512 + 4 * i..516 + 4 * i].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
    }
    // Block 1: data block 0 of the child, all 0x77; block 3: discarded (zeros).
    c[512 + 4..520].copy_from_slice(&0u32.to_le_bytes());
    c[512 + 12..528].copy_from_slice(&0xffff_fffeu32.to_le_bytes());
    c[388..392].copy_from_slice(&1u32.to_le_bytes());
    c.extend(std::iter::repeat_n(0x77u8, BLOCK as usize));
    std::fs::write(&child, &c).unwrap();
    // The parent is not in the child's folder: not found, and the chain says what it needs.
    let r = diskscope(&[&"info", &child]);
    assert!(r.all().contains("vdi-uuid:"), "{}", r.all());
    std::fs::rename(&parent, d.path("vm/base.vdi")).unwrap();
    std::fs::rename(d.path("decoy.vdi"), d.path("vm/decoy.vdi")).unwrap();
    let info = diskscope(&[&"info", &child, &"--json"]).ok().json();
    let found = info["full-backing-filename"].as_str().unwrap_or_default().to_string();
    assert!(found.ends_with("vm/base.vdi"), "the parent was not found by its UUID: {}", info);
    let ours = d.path("child.raw");
    diskscope(&[&"convert", &child, &ours]).ok();
    let mut want = vec![0x41u8; 2 * MIB as usize];
    want[MIB as usize..].fill(0x77);
    want.extend(std::iter::repeat_n(0u8, 2 * MIB as usize));
    assert!(std::fs::read(&ours).unwrap() == want, "the child over its parent reads wrong");
}
