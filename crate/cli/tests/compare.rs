//! `diskscope compare A B` against `qemu-img compare A B`: the same verdict line
//! ("Images are identical." or "Content mismatch at offset N!") and the same exit code.
mod common;
use std::path::Path;

use common::*;

/// qemu-img's verdict line (it may print "Warning: Image size mismatch!" first).
fn verdict(out: &str) -> Option<&str> {
    out.lines().map(str::trim).find(|l| *l == "Images are identical." || l.starts_with("Content mismatch at offset"))
}

fn same_as_qemu(d: &Scratch, a: &Path, b: &Path, what: &str) -> String {
    let q = qemu(d, "qemu-img", &[&"compare", &a, &b]);
    let theirs = verdict(&q.stdout).unwrap_or_else(|| panic!("{}: no verdict from qemu-img compare:\n{}", what, q.all())).to_string();
    let o = diskscope(&[&"compare", &a, &b]);
    let ours = verdict(&o.stdout).unwrap_or_else(|| panic!("{}: no verdict line from diskscope compare (qemu-img says {:?}):\n{}", what, theirs, o.all()));
    assert_eq!(ours, theirs, "{}: verdict", what);
    assert_eq!(o.code, q.code, "{}: exit code: ours {:?}, qemu-img {:?}", what, o.code, q.code);
    theirs
}

/// A QED image with random content, and the same content laid out differently by
/// `qemu-img convert -O qed` (4 KiB clusters instead of 64 KiB).
fn pair(d: &Scratch, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut rng = Rng::new(seed);
    let pattern = pattern_file(d, &mut rng);
    let size = 3 * MIB + 4 * KIB + 512;
    let a = qed(d, "a.qed", size, 64 * KIB);
    qemu_io(d, "qed", "a.qed", &random_commands(&mut rng, size, 64 * KIB, &pattern, Mix { writes: 80, max_sectors: 64, zeroes: true, discards: false }));
    let b = d.path("b.qed");
    qemu(d, "qemu-img", &[&"convert", &"-O", &"qed", &"-o", &"cluster_size=4096", &a, &b]).ok();
    (a, b)
}

#[test]
fn identical_images() {
    let d = Scratch::new();
    let (a, b) = pair(&d, 0xc0de_0001);
    let v = same_as_qemu(&d, &a, &b, "same content, different layout");
    assert_eq!(v, "Images are identical.");
}

#[test]
fn mismatching_images() {
    let d = Scratch::new();
    let (a, b) = pair(&d, 0xc0de_0002);
    // One sector changed in b, late in the disk: fresh random bytes over whatever was there.
    std::fs::write(d.path("other.bin"), Rng::new(0xd1ff).bytes(509)).unwrap();
    qemu_io(&d, "qed", "b.qed", &[format!("write -q -s other.bin {} 512", 2 * MIB + 7 * 512)]);
    let v = same_as_qemu(&d, &a, &b, "one sector changed");
    assert!(v.starts_with("Content mismatch"), "qemu-img should see the change: {}", v);
}

/// Data on one side where the other side is unallocated (reads as zeros).
#[test]
fn data_against_unallocated() {
    let d = Scratch::new();
    let a = qed(&d, "x.qed", 2 * MIB, 64 * KIB);
    let b = qed(&d, "y.qed", 2 * MIB, 4 * KIB);
    qemu_io(&d, "qed", "x.qed", &["write -q -P 0x10 1536k 512".into()]);
    let v = same_as_qemu(&d, &a, &b, "data vs unallocated");
    assert!(v.starts_with("Content mismatch"));
    // Zero bytes written on one side, nothing on the other: identical.
    qemu_io(&d, "qed", "y.qed", &["write -q -P 0x10 1536k 512".into(), "write -q -P 0 64k 4k".into(), "write -q -z -u 128k 64k".into()]);
    assert_eq!(same_as_qemu(&d, &a, &b, "zeros vs unallocated"), "Images are identical.");
}

/// Different sizes: the extra part of the larger disk must read as zeros.
#[test]
fn different_sizes() {
    let d = Scratch::new();
    let a = qed(&d, "small.qed", 2 * MIB, 64 * KIB);
    let b = qed(&d, "large.qed", 3 * MIB, 64 * KIB);
    assert_eq!(same_as_qemu(&d, &a, &b, "sizes differ, extra all zero"), "Images are identical.");
    qemu_io(&d, "qed", "large.qed", &["write -q -P 3 2560k 512".into()]);
    assert!(same_as_qemu(&d, &a, &b, "data past the smaller disk's end").starts_with("Content mismatch"));
    assert!(same_as_qemu(&d, &b, &a, "the other way round").starts_with("Content mismatch"));
}

/// A QED image against a raw file: a file in no known format is compared as raw, as
/// qemu-img does.
#[test]
fn qed_against_raw() {
    let d = Scratch::new();
    let (a, _) = pair(&d, 0xc0de_0003);
    let r = d.path("a.raw");
    qemu(&d, "qemu-img", &[&"convert", &"-O", &"raw", &a, &r]).ok();
    assert_eq!(same_as_qemu(&d, &a, &r, "QED vs its raw conversion"), "Images are identical.");
    qemu_io(&d, "raw", "a.raw", &[format!("write -q -P 0xee {} 512", MIB + 4096 + 512)]);
    assert!(same_as_qemu(&d, &a, &r, "QED vs changed raw").starts_with("Content mismatch"));
}
