//! Files diskscope cannot read must give a non-zero exit and a message that says why:
//! never a panic, never a backtrace.
mod common;
use std::fs;

use common::*;

#[test]
fn text_file_is_refused_clearly() {
    let d = Scratch::new();
    let txt = d.path("notes.txt");
    fs::write(&txt, "These are notes, not a disk image.\n".repeat(200)).unwrap();
    let out = d.path("notes.raw");
    for args in [vec!["info"], vec!["info", "--json"], vec!["map", "--json"], vec!["check"], vec!["convert"]] {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&args[0], &txt];
        for x in &args[1..] {
            a.push(x);
        }
        if args[0] == "convert" {
            a.push(&out);
        }
        let r = diskscope(&a);
        assert_clean_failure(&r);
    }
}

#[test]
fn empty_and_absent_files_are_refused_clearly() {
    let d = Scratch::new();
    let empty = d.path("empty.img");
    fs::write(&empty, b"").unwrap();
    assert_clean_failure(&diskscope(&[&"info", &empty]));
    let absent = d.path("no-such-file.qed");
    let r = diskscope(&[&"info", &absent]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("no-such-file.qed"), "the message should name the file: {}", r.stderr);
}

/// The overlay names base.raw, which is not there: say which file is missing.
#[test]
fn missing_backing_file_is_named() {
    let d = Scratch::new();
    raw(&d, "base.raw", 2 * MIB);
    let top = qed_over(&d, "top.qed", 2 * MIB, 64 * KIB, "base.raw", "raw");
    qemu_io(&d, "qed", "top.qed", &["write -q -P 1 0 64k".into()]);
    fs::remove_file(d.path("base.raw")).unwrap();
    // qemu-img cannot open it either.
    assert_ne!(qemu(&d, "qemu-img", &[&"convert", &"-O", &"raw", &top, &d.path("q.raw")]).code, Some(0));

    let r = diskscope(&[&"convert", &top, &d.path("out.raw")]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("base.raw"), "convert should name the missing backing file:\n{}", r.stderr);

    // info still describes the top image, and names what is missing.
    let r = diskscope(&[&"info", &top]);
    for bad in ["panicked", "stack backtrace"] {
        assert!(!r.all().contains(bad), "info crashed:\n{}", r.all());
    }
    assert!(r.all().contains("base.raw"), "info should name the missing backing file:\n{}", r.all());
}

/// A QED file cut inside its L1 table: a clear error, as qemu-img gives one.
#[test]
fn truncated_inside_l1_table() {
    let d = Scratch::new();
    let cluster = 64 * KIB;
    for (name, cut) in [("cut-a.qed", cluster + 1000), ("cut-b.qed", cluster + 3 * cluster)] {
        let img = qed(&d, name, 4 * MIB, cluster);
        let h = QedHeader::read(&img);
        assert_eq!(h.l1_table_offset, cluster);
        assert!(cut < h.l1_table_offset + h.table_bytes());
        set_len(&img, cut);
        assert_ne!(qemu(&d, "qemu-img", &[&"info", &img]).code, Some(0), "qemu-img should refuse {}", name);
        for cmd in ["info", "map", "check"] {
            let r = diskscope(&[&cmd, &img]);
            assert_clean_failure(&r);
            assert!(r.stderr.to_lowercase().contains("l1"), "{} {}: the message should say the L1 table is the problem:\n{}", cmd, name, r.stderr);
        }
    }
}

/// A qcow2 backing file. Until diskscope reads qcow2 it must say it cannot read the
/// backing file's format, instead of treating it as raw and writing wrong bytes. Once the
/// qcow2 reader lands, convert succeeds and the test becomes a byte (and map) comparison
/// with qemu-img. Either way: never a success with bytes that differ from QEMU's.
#[test]
fn qcow2_backing_file_is_read_or_reported_clearly() {
    let d = Scratch::new();
    create(&d, "base.qcow2", 2 * MIB, Create { fmt: "qcow2", cluster: None, table_size: None, backing: None });
    qemu_io(&d, "qcow2", "base.qcow2", &["write -q -P 0x42 0 1M".into()]);
    let top = qed_over(&d, "top.qed", 2 * MIB, 64 * KIB, "base.qcow2", "qcow2");
    qemu_io(&d, "qed", "top.qed", &["write -q -P 0x43 1M 64k".into()]);

    let r = diskscope(&[&"convert", &top, &d.path("out.raw")]);
    if r.code == Some(0) {
        // qcow2 is read: the result must be QEMU's, byte for byte.
        matches_qemu(&d, &top, "QED over a qcow2 backing file");
        return;
    }
    assert_clean_failure(&r);
    assert!(r.stderr.contains("base.qcow2"), "the message should name the backing file:\n{}", r.stderr);
    let without_name = r.stderr.replace("base.qcow2", "");
    assert!(without_name.to_lowercase().contains("qcow2"), "the message should name the format it cannot read (qcow2):\n{}", r.stderr);
}

/// qemu-img creates table_size=1 QED images it then cannot open (its table check treats a
/// one-cluster table as an overflow). We read them, byte-identical to what they hold, and
/// say why QEMU refuses them.
#[test]
fn table_size_one_is_read_and_qemus_refusal_explained() {
    let d = Scratch::new();
    let img = d.path("t1.qed");
    qemu(&d, "qemu-img", &[&"create", &"-q", &"-f", &"qed", &"-o", &"table_size=1,cluster_size=4096", &img, &"16M"]).ok();
    let q = qemu(&d, "qemu-img", &[&"info", &img]);
    assert_ne!(q.code, Some(0), "qemu-img now opens table_size=1 images: this test's premise changed\n{}", q.all());
    assert!(q.stderr.contains("QED table offset is invalid"), "{}", q.stderr);
    let c = diskscope(&[&"check", &"--json", &img]).ok().json();
    let codes: Vec<String> = c["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_string()).collect();
    assert!(codes.contains(&"qemu-refuses-table-size-1".to_string()), "{:?}", codes);
    let m = diskscope(&[&"map", &"--json", &img]).ok().json();
    assert_eq!(m[0]["length"], 16 * MIB, "an empty 16 MiB disk is one unallocated run: {}", m);
}

/// Compressed clusters are decoded by several threads: a damaged one stops the conversion
/// with an error that names it (not a hang, not a panic), and the undamaged image converts
/// as qemu-img does.
#[test]
fn damaged_compressed_cluster_stops_convert() {
    let d = Scratch::new();
    let src = d.path("src.raw");
    let mut rng = Rng::new(0x5eed);
    let mut data = Vec::new();
    for i in 0..(16 * MIB / 4096) {
        // Compressible, but not trivially: a number and random words per 4 KiB.
        let words: Vec<String> = (0..300).map(|_| format!("w{}", rng.below(5000))).collect();
        let mut block = format!("{} {}", i, words.join(" ")).into_bytes();
        block.resize(4096, b'.');
        data.extend(block);
    }
    fs::write(&src, &data).unwrap();
    let img = d.path("c.qcow2");
    qemu(&d, "qemu-img", &[&"convert", &"-c", &"-O", &"qcow2", &src, &img]).ok();
    convert_matches_qemu(&d, &img, "compressed qcow2");

    // Garbage over the middle of the compressed data.
    let mut bytes = fs::read(&img).unwrap();
    let mid = bytes.len() / 2;
    for (i, b) in bytes[mid..mid + 256 * 1024].iter_mut().enumerate() {
        *b = (i * 131 % 251) as u8;
    }
    let bad = d.path("bad.qcow2");
    fs::write(&bad, &bytes).unwrap();
    let r = diskscope(&[&"convert", &bad, &d.path("bad.raw")]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("compress") || r.stderr.contains("deflate") || r.stderr.contains("decode"), "the error should say what failed:\n{}", r.stderr);
}
