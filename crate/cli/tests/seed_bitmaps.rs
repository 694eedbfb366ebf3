//! cow, raw-cow and add-cow on disk, through the CLI. No tool reads these formats any more,
//! so images are written here from the spec tables (FORMATS.md 2 and 4, DECISIONS.md 2-3)
//! and the expected disk is computed from a model: the backing file's bytes (a QED or raw
//! made by qemu-img/qemu-io and converted by qemu-img) overlaid with what the bitmap says
//! is stored. Bytes that must never be read are 0xEE, so a wrong mapping shows.
mod common;

use common::*;
use std::fs;

const SECTOR: usize = 512;

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// A backing file: a QED made by qemu-img with random writes, and its bytes as qemu-img reads them.
fn qed_backing(dir: &Scratch, size: u64, rng: &mut Rng) -> Vec<u8> {
    qed(dir, "base.qed", size, 64 * KIB);
    let pattern = pattern_file(dir, rng);
    qemu_io(dir, "qed", "base.qed", &random_commands(rng, size, 64 * KIB, &pattern, Mix { writes: 80, max_sectors: 64, zeroes: true, discards: true }));
    qemu(dir, "qemu-img", &[&"convert", &"-O", &"raw", &"base.qed", &"base.expect"]).ok();
    fs::read(dir.path("base.expect")).unwrap()
}

/// Overlay `stored` units (granule bytes each) onto `model`, returning each unit's fill.
fn overlay(model: &mut [u8], granule: usize, rng: &mut Rng) -> Vec<Option<u8>> {
    (0..model.len().div_ceil(granule))
        .map(|u| {
            (rng.below(3) == 0).then(|| {
                let fill = rng.below(255) as u8 | 1;
                let end = ((u + 1) * granule).min(model.len());
                model[u * granule..end].fill(fill);
                fill
            })
        })
        .collect()
}

fn convert_equals(dir: &Scratch, image: &str, model: &[u8], what: &str) {
    diskscope(&[&"convert", &dir.path(image), &dir.path("out.raw")]).ok();
    let got = fs::read(dir.path("out.raw")).unwrap();
    assert_eq!(got.len(), model.len(), "{}: output size", what);
    if let Some(i) = got.iter().zip(model).position(|(a, b)| a != b) {
        panic!("{}: first difference at byte {} (got {:#x}, want {:#x})", what, i, got[i], model[i]);
    }
}

/// (layout name, raw_file at, mtime at, size at, sectorsize at, header length)
const COW_LAYOUTS: [(&str, Option<usize>, usize, usize, usize, usize); 4] = [
    ("cow x86_64", None, 1032, 1040, 1048, 1056),
    ("cow i386", None, 1032, 1036, 1044, 1048),
    ("raw-cow x86_64", Some(1032), 2056, 2064, 2072, 2080),
    ("raw-cow packed", Some(1032), 2056, 2060, 2068, 2072),
];

#[test]
fn cow_and_raw_cow_over_a_qed_backing_convert_as_the_model_says() {
    for (i, (what, raw_at, mtime, size_at, ss_at, hlen)) in COW_LAYOUTS.into_iter().enumerate() {
        let dir = Scratch::new();
        let mut rng = Rng::new(100 + i as u64);
        let disk = 3 * MIB as usize + 3 * SECTOR;
        let mut model = qed_backing(&dir, 2 * MIB, &mut rng); // shorter than the disk: zeros after
        model.resize(disk, 0);
        let stored = overlay(&mut model, SECTOR, &mut rng);
        let sectors = disk / SECTOR;
        let mut img = vec![0u8; hlen + sectors.div_ceil(8)];
        put(&mut img, 0, b"OOOM\0\0\0\x02");
        put(&mut img, 8, b"base.qed");
        put(&mut img, mtime, &1_300_000_000u32.to_be_bytes());
        put(&mut img, size_at, &(disk as u64 + 100).to_be_bytes()); // size % 512 != 0: the tail is cut
        put(&mut img, ss_at, &512u32.to_be_bytes());
        let data_start = img.len().next_multiple_of(SECTOR);
        let mut raw = vec![0xEEu8; disk];
        if raw_at.is_none() {
            img.resize(data_start + disk, 0xEE);
        } else {
            put(&mut img, 1032, b"data.raw");
        }
        for (s, fill) in stored.iter().enumerate() {
            if let Some(f) = fill {
                img[hlen + s / 8] |= 1 << (s % 8);
                let r = if raw_at.is_some() { &mut raw[s * SECTOR..(s + 1) * SECTOR] } else { &mut img[data_start + s * SECTOR..data_start + (s + 1) * SECTOR] };
                r.fill(*f);
            }
        }
        fs::write(dir.path("top.img"), &img).unwrap();
        if raw_at.is_some() {
            fs::write(dir.path("data.raw"), &raw).unwrap();
        }
        convert_equals(&dir, "top.img", &model, what);
        let info = diskscope(&[&"info", &"--json", &dir.path("top.img")]).ok().json();
        assert_eq!(info["format"], if raw_at.is_some() { "raw-cow" } else { "cow" }, "{}", what);
        assert_eq!(info["layout"], if raw_at.is_some() { "reconstructed" } else { "confirmed" }, "{}", what);
        assert_eq!(info["backing-chain"][0]["format"], "qed", "{}: the backing file is probed", what);
        let check = diskscope(&[&"check", &"--json", &dir.path("top.img")]);
        assert_eq!(check.code, Some(0), "{}: {}", what, check.all());
        let findings = check.json()["findings"].to_string();
        assert!(findings.contains("size-unaligned"), "{}: {}", what, findings);
    }
}

fn addcow_header(acow: bool, cluster_bits: u32, clusters: usize) -> (Vec<u8>, usize) {
    let (names_at, hs) = if acow { (76, (1usize << cluster_bits).max(4096)) } else { (80, 4096) };
    let mut h = vec![0u8; hs + clusters.div_ceil(8)];
    let (bo, io) = (names_at as u32, names_at as u32 + 8);
    put(&mut h, names_at, b"base.qeddisk.raw");
    if acow {
        put(&mut h, 0, b"ACOW");
        put(&mut h, 4, &bo.to_le_bytes());
        put(&mut h, 8, &8u32.to_le_bytes());
        put(&mut h, 12, &io.to_le_bytes());
        put(&mut h, 16, &8u32.to_le_bytes());
        put(&mut h, 20, &cluster_bits.to_le_bytes());
        put(&mut h, 40, &(hs as u32).to_le_bytes());
        put(&mut h, 44, b"qed");
        put(&mut h, 60, b"raw");
    } else {
        put(&mut h, 0, b"ADD_COW\xff");
        put(&mut h, 8, &1u32.to_le_bytes());
        put(&mut h, 12, &bo.to_le_bytes());
        put(&mut h, 16, &8u32.to_le_bytes());
        put(&mut h, 20, &io.to_le_bytes());
        put(&mut h, 24, &8u32.to_le_bytes());
        put(&mut h, 28, &3u64.to_le_bytes());
        put(&mut h, 44, &1u32.to_le_bytes());
        put(&mut h, 48, b"qed");
    }
    (h, hs)
}

#[test]
fn add_cow_both_generations_over_a_qed_backing_convert_as_the_model_says() {
    for (i, (acow, bits)) in [(false, 16u32), (true, 12), (true, 16)].into_iter().enumerate() {
        let what = format!("add-cow {} cluster_bits {}", if acow { "ACOW" } else { "v11" }, bits);
        let dir = Scratch::new();
        let mut rng = Rng::new(200 + i as u64);
        let cs = 1usize << bits;
        let disk = 3 * MIB as usize + 4096 + 512;
        let mut model = qed_backing(&dir, 2 * MIB, &mut rng);
        model.resize(disk, 0);
        let stored = overlay(&mut model, cs, &mut rng);
        let (mut img, hs) = addcow_header(acow, bits, stored.len());
        let mut raw = vec![0xEEu8; disk];
        for (c, fill) in stored.iter().enumerate() {
            if let Some(f) = fill {
                img[hs + c / 8] |= 1 << (c % 8);
                raw[c * cs..((c + 1) * cs).min(disk)].fill(*f);
            }
        }
        fs::write(dir.path("top.acow"), &img).unwrap();
        fs::write(dir.path("disk.raw"), &raw).unwrap();
        convert_equals(&dir, "top.acow", &model, &what);
        let info = diskscope(&[&"info", &"--json", &dir.path("top.acow")]).ok().json();
        assert_eq!(info["virtual-size"], disk as u64, "{}", what);
        assert_eq!(info["companions"][0]["name"], "disk.raw", "{}", what);
        // The map names the backing layer where bits are 0 and the image file where 1.
        let map = diskscope(&[&"map", &"--json", &dir.path("top.acow")]).ok().json();
        let runs = map.as_array().unwrap();
        assert!(runs.iter().any(|r| r["depth"] == 0 && r["data"] == true), "{}", what);
        assert!(runs.iter().any(|r| r["depth"] == 1), "{}", what);
        let total: u64 = runs.iter().map(|r| r["length"].as_u64().unwrap()).sum();
        assert_eq!(total, disk as u64);
    }
}

#[test]
fn a_missing_companion_is_named_and_conversion_fails_clearly() {
    let dir = Scratch::new();
    let (img, _) = addcow_header(true, 16, 8);
    fs::write(dir.path("top.acow"), &img).unwrap();
    let info = diskscope(&[&"info", &dir.path("top.acow")]).ok();
    assert!(info.stdout.contains("image file: disk.raw — MISSING"), "{}", info.stdout);
    let mut img = img;
    img[65536] = 1; // cluster 0 is in the (missing) image file
    fs::write(dir.path("top.acow"), &img).unwrap();
    let r = diskscope(&[&"convert", &dir.path("top.acow"), &dir.path("o.raw")]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("missing file 'disk.raw'"), "{}", r.stderr);
}
