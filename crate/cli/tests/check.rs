//! `diskscope check` against `qemu-img check --output=json` on QED images damaged on
//! purpose: same exit code (0 clean, 2 corruption, 3 leaks only) and same counts.
//!
//! 64 KiB clusters throughout: QEMU's qed_bytes_to_clusters divides by cluster_size - 1,
//! which miscounts leaks in big 4 KiB-cluster files (crate/core/src/formats/qed/check.rs).
mod common;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const CLUSTER: u64 = 64 * KIB;
const SIZE: u64 = 4 * MIB;

/// A QED image with data in clusters 0, 1 and 4, a zero cluster at 6 and data at 9,
/// so the L2 table has data, a gap, a zero entry and unallocated entries.
fn image(d: &Scratch, name: &str) -> (PathBuf, QedHeader) {
    let img = qed(d, name, SIZE, CLUSTER);
    qemu_io(d, "qed", name, &[
        format!("write -q -P 0x11 0 {}", 2 * CLUSTER),
        format!("write -q -P 0x22 {} {}", 4 * CLUSTER, CLUSTER),
        format!("write -q -z -u {} {}", 6 * CLUSTER, CLUSTER),
        format!("write -q -P 0x33 {} 512", 9 * CLUSTER),
    ]);
    let h = QedHeader::read(&img);
    (img, h)
}

/// Offset of L2 table 0 (the one covering the written clusters).
fn l2_table(img: &Path, h: &QedHeader) -> u64 {
    let l2 = read_u64(img, h.l1_entry(0));
    assert!(l2 != 0 && l2 % h.cluster_size == 0, "L1[0] should point at an L2 table, got {:#x}", l2);
    l2
}

fn l2_entry(img: &Path, h: &QedHeader, k: u64) -> u64 {
    l2_table(img, h) + 8 * k
}

fn num(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        None | Some(Value::Null) => 0, // qemu-img leaves out zero corruptions/leaks
        Some(x) => x.as_u64().unwrap_or_else(|| panic!("{} is not a number in {}", key, v)),
    }
}

/// Run both checks on `img`; their exit codes and every count qemu-img prints must agree.
/// Returns qemu-img's exit code and JSON so a test can also say what it expected.
fn same_as_qemu(d: &Scratch, img: &Path, what: &str) -> (Option<i32>, Value) {
    let q = qemu(d, "qemu-img", &[&"check", &"--output=json", &img]);
    let theirs = q.json();
    let o = diskscope(&[&"check", &img, &"--json"]);
    let ours = o.json();
    assert_eq!(o.code, q.code, "{}: exit code: ours {:?}, qemu-img check {:?}\nours: {}\nqemu: {}", what, o.code, q.code, short(&ours), short(&theirs));
    for key in ["corruptions", "leaks", "check-errors", "total-clusters", "allocated-clusters", "fragmented-clusters"] {
        assert_eq!(num(&ours, key), num(&theirs, key), "{}: `{}`: ours {}, qemu-img check {}\nours: {}\nqemu: {}", what, key, num(&ours, key), num(&theirs, key), short(&ours), short(&theirs));
    }
    assert_eq!(ours.get("format"), theirs.get("format"), "{}: format", what);
    assert_eq!(ours.get("filename"), theirs.get("filename"), "{}: filename", what);
    let findings = ours.get("findings").and_then(Value::as_array).unwrap_or_else(|| panic!("{}: no `findings` array in {}", what, short(&ours)));
    if num(&theirs, "corruptions") + num(&theirs, "leaks") > 0 {
        assert!(!findings.is_empty(), "{}: problems were counted but no finding explains them: {}", what, short(&ours));
    }
    (q.code, theirs)
}

#[test]
fn clean_image() {
    let d = Scratch::new();
    let (img, _) = image(&d, "clean.qed");
    let (code, _) = same_as_qemu(&d, &img, "clean image");
    assert_eq!(code, Some(0));
}

/// NEED_CHECK set (an image not closed cleanly) is no corruption in itself.
#[test]
fn need_check_flag() {
    let d = Scratch::new();
    let (img, h) = image(&d, "dirty.qed");
    write_u64(&img, 16, h.features | 0x02);
    same_as_qemu(&d, &img, "NEED_CHECK set");
}

#[test]
fn l2_entry_past_end_of_file() {
    let d = Scratch::new();
    let (img, h) = image(&d, "past-eof.qed");
    let eof = file_len(&img) / CLUSTER * CLUSTER;
    write_u64(&img, l2_entry(&img, &h, 2), eof + 10 * CLUSTER);
    let (code, _) = same_as_qemu(&d, &img, "L2 entry past EOF");
    assert_eq!(code, Some(2));
}

#[test]
fn l2_entry_at_end_of_file() {
    let d = Scratch::new();
    let (img, h) = image(&d, "at-eof.qed");
    let eof = file_len(&img) / CLUSTER * CLUSTER;
    write_u64(&img, l2_entry(&img, &h, 3), eof);
    same_as_qemu(&d, &img, "L2 entry exactly at EOF");
}

#[test]
fn l2_entry_not_cluster_aligned() {
    let d = Scratch::new();
    let (img, h) = image(&d, "unaligned.qed");
    let at = l2_entry(&img, &h, 4);
    let data = read_u64(&img, at);
    write_u64(&img, at, data + 512);
    let (code, _) = same_as_qemu(&d, &img, "L2 entry not cluster-aligned");
    assert_eq!(code, Some(2));
}

/// Two L2 entries name the same data cluster; the cluster the second one held is leaked.
#[test]
fn two_l2_entries_share_a_cluster() {
    let d = Scratch::new();
    let (img, h) = image(&d, "shared.qed");
    let first = read_u64(&img, l2_entry(&img, &h, 0));
    write_u64(&img, l2_entry(&img, &h, 4), first);
    let (code, theirs) = same_as_qemu(&d, &img, "two L2 entries, one cluster");
    assert_eq!(code, Some(2));
    assert!(num(&theirs, "leaks") > 0, "the orphaned cluster should count as a leak: {}", theirs);
}

/// An L2 entry pointing into the L1 table, and one pointing at the L2 table itself.
#[test]
fn l2_entries_point_at_tables() {
    let d = Scratch::new();
    let (img, h) = image(&d, "at-tables.qed");
    write_u64(&img, l2_entry(&img, &h, 2), h.l1_table_offset);
    write_u64(&img, l2_entry(&img, &h, 3), l2_table(&img, &h));
    same_as_qemu(&d, &img, "L2 entries pointing at metadata");
}

/// An L1 entry pointing at a table of garbage appended to the file: every garbage entry
/// is a bad offset. L1[1] lies beyond the disk, but qemu-img walks the whole L1 table.
#[test]
fn l1_entry_points_at_garbage() {
    let d = Scratch::new();
    let (img, h) = image(&d, "garbage.qed");
    let at = file_len(&img);
    assert_eq!(at % CLUSTER, 0);
    append(&img, &Rng::new(0x6a7ba6e).bytes(h.table_bytes() as usize));
    write_u64(&img, h.l1_entry(1), at);
    let (code, _) = same_as_qemu(&d, &img, "L1 entry -> garbage table");
    assert_eq!(code, Some(2));
}

#[test]
fn l1_entries_invalid() {
    let d = Scratch::new();
    let (img, h) = image(&d, "l1-bad.qed");
    let eof = file_len(&img) / CLUSTER * CLUSTER;
    write_u64(&img, h.l1_entry(2), l2_table(&img, &h) + 4096); // not aligned
    write_u64(&img, h.l1_entry(3), eof + CLUSTER); // past EOF
    write_u64(&img, h.l1_entry(4), eof - CLUSTER); // last cluster: the table would run past EOF
    let (code, _) = same_as_qemu(&d, &img, "invalid L1 entries");
    assert_eq!(code, Some(2));
}

/// Two L1 entries naming the same L2 table.
#[test]
fn l2_table_shared_by_two_l1_entries() {
    let d = Scratch::new();
    let (img, h) = image(&d, "l2-shared.qed");
    write_u64(&img, h.l1_entry(1), l2_table(&img, &h));
    let (code, _) = same_as_qemu(&d, &img, "L2 table shared");
    assert_eq!(code, Some(2));
}

#[test]
fn leaked_cluster_appended() {
    let d = Scratch::new();
    let (img, _) = image(&d, "leak.qed");
    append(&img, &vec![0x5a; CLUSTER as usize]);
    let (code, theirs) = same_as_qemu(&d, &img, "one appended cluster");
    assert_eq!(code, Some(3));
    assert_eq!(num(&theirs, "leaks"), 1);
}

/// Three and a half clusters appended: the half is ignored, like QEMU rounds the file down.
#[test]
fn leaked_clusters_and_a_partial_one() {
    let d = Scratch::new();
    let (img, _) = image(&d, "leaks.qed");
    append(&img, &vec![0xa5; (3 * CLUSTER + CLUSTER / 2) as usize]);
    let (code, _) = same_as_qemu(&d, &img, "appended clusters + partial");
    assert_eq!(code, Some(3));
}

/// The file cut short so the last data cluster is gone: its L2 entry points past EOF.
#[test]
fn truncated_data_cluster() {
    let d = Scratch::new();
    let (img, h) = image(&d, "cut.qed");
    let l2 = l2_table(&img, &h);
    let last_data = (0..16).map(|k| read_u64(&img, l2 + 8 * k)).filter(|&e| e > 1).max().unwrap();
    assert!(last_data > l2, "QEMU should have placed a data cluster after the L2 table");
    set_len(&img, last_data + 100); // a partial cluster remains: QEMU ignores it
    let (code, _) = same_as_qemu(&d, &img, "file cut inside the last data cluster");
    assert_eq!(code, Some(2));
}

/// Several L2 tables (table_size 2 gives 1 GiB per L2 table at 64 KiB): allocated and
/// fragmented counts across tables, as qemu-img counts them.
#[test]
fn several_l2_tables() {
    let d = Scratch::new();
    let name = "multi.qed";
    let img = create(&d, name, 2560 * MIB, Create { fmt: "qed", cluster: Some(CLUSTER), table_size: Some(2), backing: None });
    qemu_io(&d, "qed", name, &[
        format!("write -q -P 1 0 {}", 2 * CLUSTER),
        format!("write -q -P 2 {} {}", 1024 * MIB, 2 * CLUSTER),
        format!("write -q -P 3 {} {}", 2048 * MIB, CLUSTER),
        format!("write -q -P 4 {} {}", 5 * CLUSTER, CLUSTER),
        format!("write -q -P 5 {} {}", 1024 * MIB + 3 * CLUSTER, CLUSTER),
    ]);
    same_as_qemu(&d, &img, "three L2 tables");
    // 2.5 GiB of guest: compare the map only, not the raw bytes.
    map_matches_qemu(&d, &img, "three L2 tables");
}
