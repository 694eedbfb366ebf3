//! VHDX images made by qemu-img and qemu-io (dynamic and fixed, several block and log
//! sizes, with and without ZERO block states): `diskscope convert` must write qemu-img
//! convert's bytes. QEMU's vhdx driver reports no block status (qemu-img map prints one
//! "data" run over the whole disk), so our map is held to the bytes instead: wherever it
//! says zeros, qemu-img's raw output is zeros. `diskscope check` must exit as qemu-img check
//! does on images damaged on purpose. A dirty log is written here into a qemu-made image:
//! QEMU replays it on a copy when it opens it for writing; diskscope must read the
//! original as that replayed copy, without writing it, and as stored with --as-stored.
mod common;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn vhdx(d: &Scratch, name: &str, size: u64, opts: &str) -> PathBuf {
    create_with(d, name, size, "vhdx", opts)
}

/// Where our map says the disk reads zeros (or has nothing), qemu-img's raw output is zeros.
fn map_agrees_with_bytes(img: &Path, raw: &Path, what: &str) {
    let map = diskscope(&[&"map", &img, &"--json"]).ok().json();
    let bytes = std::fs::read(raw).unwrap();
    let mut pos = 0;
    for e in map.as_array().unwrap() {
        let (start, length) = (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap());
        assert_eq!(start, pos, "{}: the map has a gap", what);
        pos += length;
        if e["data"] == false || e["zero"] == true {
            let run = &bytes[start as usize..(start + length) as usize];
            assert!(run.iter().all(|&b| b == 0), "{}: the map says {}..{} reads zeros, qemu-img's output does not", what, start, start + length);
        }
    }
    assert_eq!(pos as usize, bytes.len(), "{}: the map does not cover the disk", what);
}

#[test]
fn images_of_every_shape_convert_as_qemu() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x7d8_0000);
    let pattern = pattern_file(&d, &mut rng);
    let size = 6 * MIB + 4 * KIB;
    let shapes = ["", "block_size=1M", "block_size=1M,log_size=4M", "block_size=2M,block_state_zero=off", "subformat=fixed,block_size=1M"];
    for (k, opts) in shapes.iter().enumerate() {
        let name = format!("shape-{}.vhdx", k);
        let img = vhdx(&d, &name, size, opts);
        let empty = convert_matches_qemu(&d, &img, &format!("empty {}", opts));
        map_agrees_with_bytes(&img, &empty, opts);
        let mix = Mix { writes: 120, max_sectors: 64, zeroes: true, discards: true };
        qemu_io(&d, "vhdx", &name, &random_commands(&mut rng, size, MIB, &pattern, mix));
        let out = convert_matches_qemu(&d, &img, &format!("written {}", opts));
        map_agrees_with_bytes(&img, &out, opts);
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The BAT's file offset, from region table 1.
fn bat_offset(b: &[u8]) -> usize {
    const BAT: [u8; 16] = [0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08];
    let rt = 192 * 1024;
    (0..u32_at(b, rt + 8) as usize).map(|i| rt + 16 + 32 * i).find(|&e| b[e..e + 16] == BAT).map(|e| u64_at(b, e + 16) as usize).expect("a BAT region")
}

/// An image with blocks 0, 1 and 3 written (1 MiB blocks).
fn written(d: &Scratch, name: &str) -> PathBuf {
    let img = vhdx(d, name, 8 * MIB, "block_size=1M");
    qemu_io(d, "vhdx", name, &["write -q -P 0x11 0 64k".into(), "write -q -P 0x22 1M 4k".into(), "write -q -P 0x33 3M 1M".into()]);
    img
}

#[test]
fn check_matches_qemu() {
    let d = Scratch::new();
    type Damage = fn(&Path);
    let cases: [(&str, Damage, i32, u64); 4] = [
        ("clean", |_| {}, 0, 0),
        // The last block's end cut off.
        ("truncated", |p| set_len(p, file_len(p) - 4096), 2, 1),
        // Block 5 points far past the end of the file.
        ("past-end", |p| {
            let b = std::fs::read(p).unwrap();
            write_u64(p, bat_offset(&b) as u64 + 40, 64 * MIB | 6);
        }, 2, 1),
        // Block 6 points into the BAT region itself.
        ("over-bat", |p| {
            let b = std::fs::read(p).unwrap();
            let bat = bat_offset(&b) as u64;
            write_u64(p, bat + 48, bat | 6);
        }, 2, 1),
    ];
    for (name, damage, code, corruptions) in cases {
        let img = written(&d, &format!("{}.vhdx", name));
        damage(&img);
        let ((qc, q), (oc, o)) = checks(&d, &img, "vhdx");
        assert_eq!((qc, num(&q, "corruptions")), (Some(code), corruptions), "{}: qemu-img check: {}", name, q);
        assert_eq!((oc, num(&o, "corruptions")), (qc, num(&q, "corruptions")), "{}\nours: {}\nqemu: {}", name, short(&o), q);
    }
}

/// CRC-32C (Castagnoli, reflected), bit by bit: the log's checksum.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Set the current header's log_guid and fix its checksum.
fn set_log_guid(b: &mut [u8], guid: [u8; 16]) {
    let (h1, h2) = (64 * 1024, 128 * 1024);
    let cur = if u64_at(b, h1 + 8) > u64_at(b, h2 + 8) { h1 } else { h2 };
    b[cur + 48..cur + 64].copy_from_slice(&guid);
    b[cur + 4..cur + 8].fill(0);
    let c = crc32c(&b[cur..cur + 4096]);
    b[cur + 4..cur + 8].copy_from_slice(&c.to_le_bytes());
}

/// One log entry with one data descriptor: `page` (4 KiB) to file offset `to`.
fn log_entry(seq: u64, guid: [u8; 16], to: u64, page: &[u8], file_len: u64) -> Vec<u8> {
    let mut e = vec![0u8; 8192];
    e[0..4].copy_from_slice(b"loge");
    e[8..12].copy_from_slice(&8192u32.to_le_bytes());
    e[16..24].copy_from_slice(&seq.to_le_bytes());
    e[24..28].copy_from_slice(&1u32.to_le_bytes());
    e[32..48].copy_from_slice(&guid);
    e[48..56].copy_from_slice(&file_len.to_le_bytes());
    e[56..64].copy_from_slice(&file_len.to_le_bytes());
    e[64..68].copy_from_slice(b"desc");
    e[68..72].copy_from_slice(&page[4092..4096]);
    e[72..80].copy_from_slice(&page[..8]);
    e[80..88].copy_from_slice(&to.to_le_bytes());
    e[88..96].copy_from_slice(&seq.to_le_bytes());
    e[4096..4100].copy_from_slice(b"data");
    e[4100..4104].copy_from_slice(&((seq >> 32) as u32).to_le_bytes());
    e[4104..8188].copy_from_slice(&page[8..4092]);
    e[8188..8192].copy_from_slice(&(seq as u32).to_le_bytes());
    let c = crc32c(&e);
    e[4..8].copy_from_slice(&c.to_le_bytes());
    e
}

#[test]
fn a_dirty_log_reads_as_qemu_replays_it() {
    let d = Scratch::new();
    let img = written(&d, "dirty.vhdx");
    let mut b = std::fs::read(&img).unwrap();
    // A block of data written at the end, its BAT entry (block 2) only in the log.
    let block = (b.len() as u64).next_multiple_of(MIB);
    b.resize(block as usize, 0);
    b.extend(std::iter::repeat_n(0x7eu8, MIB as usize));
    let bat = bat_offset(&b);
    let mut page = b[bat..bat + 4096].to_vec();
    page[16..24].copy_from_slice(&(block | 6).to_le_bytes());
    let guid = [0x4c; 16];
    let cur = if u64_at(&b, 65536 + 8) > u64_at(&b, 131072 + 8) { 65536 } else { 131072 };
    let log_at = u64_at(&b, cur + 72) as usize;
    let e = log_entry(100, guid, bat as u64, &page, b.len() as u64);
    b[log_at..log_at + e.len()].copy_from_slice(&e);
    set_log_guid(&mut b, guid);
    std::fs::write(&img, &b).unwrap();
    // QEMU refuses to open it read-only; it replays the log when it opens a copy for writing.
    let q = qemu(&d, "qemu-img", &[&"info", &img]);
    assert_ne!(q.code, Some(0), "qemu-img opened a dirty VHDX read-only: {}", q.all());
    let copy = d.path("replayed.vhdx");
    std::fs::copy(&img, &copy).unwrap();
    qemu(&d, "qemu-img", &[&"check", &"-r", &"all", &copy]);
    let theirs = d.path("replayed.raw");
    qemu(&d, "qemu-img", &[&"convert", &"-O", &"raw", &copy, &theirs]).ok();
    let ours = d.path("ours.raw");
    diskscope(&[&"convert", &img, &ours]).ok();
    assert_same_bytes(&ours, &theirs, "dirty VHDX, replayed");
    assert!(std::fs::read(&img).unwrap() == b, "diskscope must not write the image");
    let info = diskscope(&[&"info", &img, &"--json"]).ok().json();
    assert_eq!(info["dirty-flag"], true, "{}", short(&info));
    let check = diskscope(&[&"check", &img, &"--json"]).json();
    assert!(check["findings"].as_array().unwrap().iter().any(|f| f["code"] == "log-dirty" && f["severity"] == "warning"), "{}", short(&check));
    // As stored: block 2 is not there.
    let stored = d.path("stored.raw");
    diskscope(&[&"convert", &img, &stored, &"--as-stored"]).ok();
    let s = std::fs::read(&stored).unwrap();
    assert!(s[2 * MIB as usize..3 * MIB as usize].iter().all(|&x| x == 0), "as stored, block 2 reads zeros");
    assert!(std::fs::read(&ours).unwrap()[2 * MIB as usize..3 * MIB as usize].iter().all(|&x| x == 0x7e));
}
