//! qcow version 1 images made by qemu-img and qemu-io: convert and map must match
//! qemu-img's, over backing files and with compressed clusters.
mod common;
use common::*;

const SIZE: u64 = 3 * MIB + 4 * KIB + 512;

#[test]
fn random_writes_over_a_raw_backing_file() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x0c01);
    let pattern = pattern_file(&d, &mut rng);
    raw(&d, "base.raw", SIZE - 192 * KIB);
    let plain = Mix { writes: 60, max_sectors: 64, zeroes: false, discards: false };
    qemu_io(&d, "raw", "base.raw", &random_commands(&mut rng, SIZE - 192 * KIB, 4096, &pattern, plain));
    for (name, backing) in [("alone.qcow", ""), ("over.qcow", "backing_file=base.raw,backing_fmt=raw")] {
        let img = create_with(&d, name, SIZE, "qcow", backing);
        // qcow has no zero clusters or discard: zero writes store zeros.
        let mix = Mix { writes: 250, max_sectors: 48, zeroes: true, discards: false };
        qemu_io(&d, "qcow", name, &random_commands(&mut rng, SIZE, 4096, &pattern, mix));
        matches_qemu(&d, &img, name);
        let check = diskscope(&[&"check", &img, &"--json"]);
        assert_eq!(check.code, Some(0), "{}: {}", name, check.stdout);
    }
    let info = diskscope(&[&"info", &d.path("over.qcow"), &"--json"]).ok().json();
    assert_eq!(info["format"], "qcow");
    assert_eq!(info["backing-filename"], "base.raw");
}

/// `qemu-img convert -c -O qcow`. qemu-img 10.0 exits 1 at the very end of such a
/// conversion without a message, after writing a complete image: the image is checked
/// against its source with qemu-img itself before it is used.
#[test]
fn compressed_by_qemu_img() {
    let d = Scratch::new();
    let src = raw(&d, "src.raw", SIZE);
    let mut rng = Rng::new(0x0c02);
    let pattern = pattern_file(&d, &mut rng);
    let mix = Mix { writes: 80, max_sectors: 256, zeroes: false, discards: false };
    qemu_io(&d, "raw", "src.raw", &random_commands(&mut rng, SIZE, 4096, &pattern, mix));
    let img = d.path("c.qcow");
    let r = qemu(&d, "qemu-img", &[&"convert", &"-c", &"-O", &"qcow", &src, &img]);
    assert!(r.code == Some(0) || (r.code == Some(1) && r.stderr.trim().is_empty()), "qemu-img convert -c failed: {}", r.stderr);
    qemu(&d, "qemu-img", &[&"compare", &"-f", &"raw", &"-F", &"qcow", &src, &img]).ok();
    let map = qemu(&d, "qemu-img", &[&"map", &"--output=json", &img]).ok().json();
    assert!(map.as_array().unwrap().iter().any(|e| e["compressed"] == true), "qemu-img should have compressed clusters");
    matches_qemu(&d, &img, "compressed qcow");
    // Written over: compressed clusters become plain ones.
    let mix = Mix { writes: 60, max_sectors: 24, zeroes: false, discards: false };
    qemu_io(&d, "qcow", "c.qcow", &random_commands(&mut rng, SIZE, 4096, &pattern, mix));
    matches_qemu(&d, &img, "compressed qcow after writes");
    let check = diskscope(&[&"check", &img, &"--json"]).json();
    assert_eq!(check["corruptions"], Value::Null, "{}", short(&check));
}

use serde_json::Value;
