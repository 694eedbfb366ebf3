//! VMDK against QEMU: every subformat `qemu-img create` makes (monolithicSparse, with and
//! without zeroed-grain GTEs, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat),
//! streamOptimized as `qemu-img convert` writes it, and sparse chains by parentCID, all
//! written at random with qemu-io; `diskscope convert` must give `qemu-img convert -O raw`'s
//! bytes and `diskscope map --json` must print `qemu-img map --output=json`'s array.
//!
//! Where QEMU and diskscope differ on purpose, the test says so and shows it:
//! - a ZERO extent reads as zeros (VMware's spec); QEMU skips ZERO lines (a shorter disk);
//! - a parent whose CID changed since the child was made: QEMU refuses to read through it,
//!   diskscope reads it and reports the mismatch;
//! - a grain past the end of its file: qemu-img check stops at the first with "Check
//!   failed" (exit 1); diskscope reports each one as corruption (exit 2).
mod common;
use std::fs;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const GRAIN: u64 = 64 * KIB;
/// The extent size of the twoGbMaxExtent subformats.
const TWO_GB: u64 = 2 << 30;

/// `qemu-img create -f vmdk -o subformat=S[,zeroed_grain=on] [-b B -F vmdk] NAME SIZE`.
fn vmdk(d: &Scratch, name: &str, size: u64, subformat: &str, zeroed_grain: bool, backing: Option<&str>) -> PathBuf {
    let mut o = format!("subformat={}", subformat);
    if zeroed_grain {
        o.push_str(",zeroed_grain=on");
    }
    let mut args: Vec<String> = vec!["create".into(), "-q".into(), "-f".into(), "vmdk".into(), "-o".into(), o];
    if let Some(b) = backing {
        args.extend(["-b".into(), b.into(), "-F".into(), "vmdk".into()]);
    }
    args.push(name.into());
    args.push(size.to_string());
    let refs: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
    qemu(d, "qemu-img", &refs).ok();
    d.path(name)
}

/// The data ranges of a file, from SEEK_DATA / SEEK_HOLE.
fn data_ranges(f: &fs::File, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0i64;
    while (pos as u64) < len {
        // SAFETY: lseek on a file this function holds open; reads below are positioned.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        out.push((data as u64, end as u64));
        pos = end;
    }
    out
}

/// Byte-for-byte comparison of two large sparse files without reading their common holes.
fn assert_same_sparse(ours: &Path, theirs: &Path, what: &str) {
    let (a, b) = (fs::File::open(ours).unwrap(), fs::File::open(theirs).unwrap());
    let (la, lb) = (file_len(ours), file_len(theirs));
    assert_eq!(la, lb, "{}: raw output size differs: ours {} bytes, qemu-img convert {} bytes", what, la, lb);
    let mut ranges = data_ranges(&a, la);
    ranges.extend(data_ranges(&b, lb));
    ranges.sort_unstable();
    let (mut x, mut y) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
    let mut done = 0u64;
    for (s, e) in ranges {
        let mut pos = s.max(done);
        while pos < e {
            let n = ((e - pos) as usize).min(x.len());
            a.read_exact_at(&mut x[..n], pos).unwrap();
            b.read_exact_at(&mut y[..n], pos).unwrap();
            if x[..n] != y[..n] {
                let i = x[..n].iter().zip(&y[..n]).position(|(p, q)| p != q).unwrap();
                panic!("{}: raw output differs from qemu-img convert at byte {}: ours {:#04x}, qemu {:#04x}", what, pos + i as u64, x[i], y[i]);
            }
            pos += n as u64;
        }
        done = done.max(e);
    }
}

/// convert and map against qemu-img for a disk too large to read whole into memory.
fn matches_qemu_big(d: &Scratch, image: &Path, what: &str) {
    map_matches_qemu(d, image, what);
    let stem = image.file_name().unwrap().to_string_lossy().into_owned();
    let (theirs, ours) = (d.path(&format!("{}.qemu.raw", stem)), d.path(&format!("{}.ours.raw", stem)));
    qemu(d, "qemu-img", &[&"convert", &"-O", &"raw", &image, &theirs]).ok();
    diskscope(&[&"convert", &image, &ours]).ok();
    assert_same_sparse(&ours, &theirs, what);
    fs::remove_file(theirs).unwrap();
    fs::remove_file(ours).unwrap();
}

fn mix(writes: usize) -> Mix {
    Mix { writes, max_sectors: 160, zeroes: true, discards: true }
}

/// Every subformat that lives in one extent, empty and after random writes, zero writes and
/// discards (QEMU writes zeros for zero writes unless zeroed-grain GTEs are on; discards do
/// nothing in VMDK).
#[test]
fn single_extent_subformats_after_random_writes() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x7d3c_0001);
    let pattern = pattern_file(&d, &mut rng);
    // Not a multiple of the 64 KiB grain: the last grain is partial.
    let size = 5 * MIB + 4 * KIB + 512;
    for (sub, zg) in [("monolithicSparse", false), ("monolithicSparse", true), ("monolithicFlat", false)] {
        let name = format!("{}{}.vmdk", sub, if zg { "-zg" } else { "" });
        let img = vmdk(&d, &name, size, sub, zg, None);
        let out = matches_qemu(&d, &img, &format!("{} (empty)", name));
        assert_eq!(file_len(&out), size);
        qemu_io(&d, "vmdk", &name, &random_commands(&mut rng, size, GRAIN, &pattern, mix(250)));
        matches_qemu(&d, &img, &name);
        let r = diskscope(&[&"check", &img]);
        assert_eq!(r.code, Some(0), "{}: check should be clean:\n{}", name, r.all());
        assert_eq!(qemu(&d, "qemu-img", &[&"check", &img]).code, Some(0));
    }
}

/// Whole-grain zero writes with zeroed_grain=on become GTEs of 1: present zeros, no data.
#[test]
fn zeroed_grain_entries_map_as_zeros() {
    let d = Scratch::new();
    let size = 4 * MIB;
    let img = vmdk(&d, "zg.vmdk", size, "monolithicSparse", true, None);
    qemu_io(&d, "vmdk", "zg.vmdk", &[
        format!("write -q -P 0x31 0 {}", 4 * GRAIN),
        format!("write -q -z {} {}", GRAIN, 2 * GRAIN),      // whole grains over data: zeroed GTEs
        format!("write -q -z {} {}", 8 * GRAIN, GRAIN),      // a whole grain over nothing
        format!("write -q -z {} 4096", 12 * GRAIN + 512),    // part of a grain: zeros written
    ]);
    matches_qemu(&d, &img, "zg.vmdk");
    let map = diskscope(&[&"map", &img, &"--json"]).ok().json();
    let zeroed: Vec<&Value> = map.as_array().unwrap().iter().filter(|e| e["present"] == true && e["data"] == false).collect();
    assert_eq!(zeroed.len(), 2, "two zeroed-grain runs: {}", short(&map));
    assert_eq!((zeroed[0]["start"].as_u64(), zeroed[0]["length"].as_u64()), (Some(GRAIN), Some(2 * GRAIN)));
}

/// twoGbMaxExtentSparse and twoGbMaxExtentFlat need a disk over 2 GiB to have several
/// extent files; only a few MiB are written, around the extents' seam and at the end.
#[test]
fn two_gb_extent_subformats() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x2_0000_0001);
    let pattern = pattern_file(&d, &mut rng);
    let size = TWO_GB + 4 * MIB + 512;
    for sub in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
        let name = format!("{}.vmdk", sub);
        let img = vmdk(&d, &name, size, sub, false, None);
        let text = fs::read_to_string(&img).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("RW ")).count(), 2, "{}: two extents:\n{}", name, text);
        let mut cmds = vec![
            format!("write -q -s {} {} {}", pattern, TWO_GB - 3 * GRAIN - 1024, 6 * GRAIN + 2048), // across the seam
            format!("write -q -P 0x44 {} 512", size - 512),
            format!("write -q -z {} {}", TWO_GB - GRAIN, 2 * GRAIN),
        ];
        // Random writes in the first and last few MiB.
        for c in random_commands(&mut rng, 4 * MIB, GRAIN, &pattern, mix(40)) {
            cmds.push(c.clone());
            let mut parts: Vec<String> = c.split(' ').map(String::from).collect();
            let n = parts.len();
            if let Ok(off) = parts[n - 2].parse::<u64>() {
                parts[n - 2] = (off + size - 4 * MIB - 512).to_string();
                cmds.push(parts.join(" "));
            }
        }
        qemu_io(&d, "vmdk", &name, &cmds);
        matches_qemu_big(&d, &img, &name);
        // info names both extent files, found.
        let info = diskscope(&[&"info", &img, &"--json"]).ok().json();
        let comps = info["companions"].as_array().unwrap();
        assert_eq!(comps.len(), 2, "{}", short(&info));
        assert!(comps.iter().all(|c| c["found"].is_string()), "{}", short(&info));
    }
}

/// streamOptimized as `qemu-img convert` writes it: compressed grains with markers, from a
/// raw disk of random data, zero runs and a partial last grain.
#[test]
fn stream_optimized_from_a_raw_disk() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x5_7ea_0001);
    let pattern = pattern_file(&d, &mut rng);
    let size = 5 * MIB + 4 * KIB + 512;
    raw(&d, "src.raw", size);
    let mut cmds = random_commands(&mut rng, size, GRAIN, &pattern, Mix { writes: 120, max_sectors: 200, zeroes: false, discards: false });
    cmds.push(format!("write -q -P 0x66 {} 512", size - 512));
    qemu_io(&d, "raw", "src.raw", &cmds);
    qemu(&d, "qemu-img", &[&"convert", &"-O", &"vmdk", &"-o", &"subformat=streamOptimized", &"src.raw", &"s.vmdk"]).ok();
    let img = d.path("s.vmdk");
    let out = matches_qemu(&d, &img, "s.vmdk");
    assert_same_bytes(&out, &d.path("src.raw"), "s.vmdk against its source");
    let map = diskscope(&[&"map", &img, &"--json"]).ok().json();
    assert!(map.as_array().unwrap().iter().any(|e| e["compressed"] == true), "compressed runs: {}", short(&map));
    let r = diskscope(&[&"check", &img]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    let info = diskscope(&[&"info", &img]).ok();
    assert!(info.stdout.contains("streamOptimized"), "{}", info.stdout);
}

/// Sparse chains by parentCID: base <- mid <- top (top with zeroed-grain GTEs), each layer
/// written at random; unallocated grains read from below, zeroed grains do not.
#[test]
fn sparse_chain_through_parent_cid() {
    let d = Scratch::new();
    let mut rng = Rng::new(0xc1d_0001);
    let pattern = pattern_file(&d, &mut rng);
    let size = 4 * MIB + 512;
    vmdk(&d, "base.vmdk", size, "monolithicSparse", false, None);
    qemu_io(&d, "vmdk", "base.vmdk", &random_commands(&mut rng, size, GRAIN, &pattern, mix(80)));
    vmdk(&d, "mid.vmdk", size, "monolithicSparse", false, Some("base.vmdk"));
    qemu_io(&d, "vmdk", "mid.vmdk", &random_commands(&mut rng, size, GRAIN, &pattern, mix(60)));
    let top = vmdk(&d, "top.vmdk", size, "monolithicSparse", true, Some("mid.vmdk"));
    let mut cmds = random_commands(&mut rng, size, GRAIN, &pattern, mix(60));
    cmds.push(format!("write -q -z {} {}", 2 * GRAIN, 3 * GRAIN));
    qemu_io(&d, "vmdk", "top.vmdk", &cmds);
    matches_qemu(&d, &top, "top.vmdk over mid.vmdk over base.vmdk");
    matches_qemu(&d, &d.path("mid.vmdk"), "mid.vmdk over base.vmdk");
    let info = diskscope(&[&"info", &top, &"--json"]).ok().json();
    assert_eq!(info["backing-filename"], "mid.vmdk");
    assert_eq!(info["backing-chain"].as_array().unwrap().len(), 2);
    assert!(info.get("chain-findings").is_none(), "CIDs agree: {}", short(&info));
}

/// After the parent is written again its CID changes: QEMU then refuses to read through it
/// (qemu-img convert fails with "Invalid argument"); diskscope reads the parent as it now
/// is and reports the mismatch (the chain's parent-identity-mismatch finding).
#[test]
fn a_parent_whose_cid_changed_is_reported() {
    let d = Scratch::new();
    let size = 2 * MIB;
    vmdk(&d, "p.vmdk", size, "monolithicSparse", false, None);
    qemu_io(&d, "vmdk", "p.vmdk", &["write -q -P 0x51 0 1M".into()]);
    let child = vmdk(&d, "c.vmdk", size, "monolithicSparse", false, Some("p.vmdk"));
    qemu_io(&d, "vmdk", "c.vmdk", &["write -q -P 0x52 64k 64k".into()]);
    matches_qemu(&d, &child, "c.vmdk before the parent changes");
    qemu_io(&d, "vmdk", "p.vmdk", &["write -q -P 0x53 1M 4k".into()]);
    let q = qemu(&d, "qemu-img", &[&"convert", &"-O", &"raw", &child, &d.path("q.raw")]);
    assert_ne!(q.code, Some(0), "QEMU refuses a parent with another CID:\n{}", q.all());
    let out = d.path("ours.raw");
    diskscope(&[&"convert", &child, &out]).ok();
    let b = fs::read(&out).unwrap();
    assert!(b[..65536].iter().all(|&x| x == 0x51) && b[65536..131072].iter().all(|&x| x == 0x52) && b[1 << 20..(1 << 20) + 4096].iter().all(|&x| x == 0x53));
    let info = diskscope(&[&"info", &child]).ok();
    assert!(info.stdout.contains("vmdk-cid:") && info.stdout.contains("identity"), "info should report the CID mismatch:\n{}", info.stdout);
}

/// A missing extent file: info names it as missing, map marks its range, convert fails with
/// a message naming it (qemu-img cannot open the image at all).
#[test]
fn a_missing_extent_file_is_named() {
    let d = Scratch::new();
    let img = vmdk(&d, "flat.vmdk", 2 * MIB, "monolithicFlat", false, None);
    fs::remove_file(d.path("flat-flat.vmdk")).unwrap();
    assert_ne!(qemu(&d, "qemu-img", &[&"info", &img]).code, Some(0));
    let r = diskscope(&[&"convert", &img, &d.path("out.raw")]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("flat-flat.vmdk"), "convert should name the missing extent file:\n{}", r.stderr);
    let info = diskscope(&[&"info", &img]).ok();
    assert!(info.stdout.contains("flat-flat.vmdk") && info.stdout.contains("MISSING"), "{}", info.stdout);

    let size = TWO_GB + 2 * MIB;
    let img = vmdk(&d, "two.vmdk", size, "twoGbMaxExtentSparse", false, None);
    qemu_io(&d, "vmdk", "two.vmdk", &["write -q -P 0x61 0 64k".into()]);
    fs::remove_file(d.path("two-s002.vmdk")).unwrap();
    let map = diskscope(&[&"map", &img, &"--json"]).ok().json();
    let last = map.as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["start"].as_u64(), last["missing"].as_bool()), (Some(TWO_GB), Some(true)), "{}", short(&map));
    let r = diskscope(&[&"convert", &img, &d.path("two.raw")]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("two-s002.vmdk"), "{}", r.stderr);
    let r = diskscope(&[&"check", &img]);
    assert!(r.stdout.contains("'two-s002.vmdk' is missing"), "{}", r.all());
}

/// A hand-made descriptor with a ZERO extent between two flat extents of one file converts
/// to the flat bytes around 2 MiB of zeros, as VMware's spec defines. QEMU skips ZERO lines,
/// so qemu-img sees a 2 MiB disk: that difference is intended (and checked here).
#[test]
fn a_zero_extent_converts_to_zeros() {
    let d = Scratch::new();
    let flat: Vec<u8> = (0..2 * MIB as u32).map(|i| (i % 253) as u8 + 1).collect();
    fs::write(d.path("z-flat.vmdk"), &flat).unwrap();
    let desc = "# Disk DescriptorFile\nversion=1\nCID=0000abcd\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n\
# Extent description\nRW 2048 FLAT \"z-flat.vmdk\" 0\nRW 4096 ZERO\nRW 2048 FLAT \"z-flat.vmdk\" 2048\n";
    fs::write(d.path("z.vmdk"), desc).unwrap();
    let img = d.path("z.vmdk");
    let out = d.path("z.raw");
    diskscope(&[&"convert", &img, &out]).ok();
    let got = fs::read(&out).unwrap();
    assert_eq!(got.len() as u64, 4 * MIB);
    assert!(got[..MIB as usize] == flat[..MIB as usize]);
    assert!(got[MIB as usize..3 * MIB as usize].iter().all(|&b| b == 0));
    assert!(got[3 * MIB as usize..] == flat[MIB as usize..]);
    let map = diskscope(&[&"map", &img, &"--json"]).ok().json();
    let e = &map.as_array().unwrap()[1];
    assert_eq!((e["start"].as_u64(), e["length"].as_u64(), e["present"].as_bool(), e["zero"].as_bool(), e["data"].as_bool()),
        (Some(MIB), Some(2 * MIB), Some(true), Some(true), Some(false)), "{}", short(&map));
    let q = qemu(&d, "qemu-img", &[&"info", &"--output=json", &img]).ok().json();
    assert_eq!(q["virtual-size"].as_u64(), Some(2 * MIB), "QEMU skips the ZERO line");
}

/// Every descriptor line is a header field at its byte offset in the file it lives in: the
/// descriptor file of a flat disk, sector 1 of a monolithic sparse file.
#[test]
fn descriptor_lines_are_fields_at_their_offsets() {
    let d = Scratch::new();
    for (name, sub, base) in [("f.vmdk", "monolithicFlat", 0u64), ("m.vmdk", "monolithicSparse", 512)] {
        let img = vmdk(&d, name, MIB, sub, false, None);
        let bytes = fs::read(&img).unwrap();
        let end = bytes[base as usize..].iter().position(|&b| b == 0).map_or(bytes.len(), |i| base as usize + i);
        let text = std::str::from_utf8(&bytes[base as usize..end]).unwrap();
        let info = diskscope(&[&"info", &img, &"--json"]).ok().json();
        let fields = info["header-fields"].as_array().unwrap();
        let mut at = base;
        for line in text.split('\n') {
            if !line.is_empty() {
                let f = fields.iter().find(|f| f["offset"].as_u64() == Some(at)).unwrap_or_else(|| panic!("{}: no field at {} for {:?}", name, at, line));
                assert_eq!(f["value"], line, "{}", name);
                assert!(!f["note"].as_str().unwrap().is_empty());
            }
            at += line.len() as u64 + 1;
        }
        let cid = fields.iter().find(|f| f["name"] == "CID").unwrap();
        assert!(cid["note"].as_str().unwrap().contains("content ID"));
        let ext = fields.iter().find(|f| f["name"] == "extent 1").unwrap();
        assert!(ext["note"].as_str().unwrap().contains("read-write, 2048 sectors"), "{}", ext);
    }
}

/// A grain table entry pointing past the end of the file: qemu-img check fails at it (exit
/// 1, "Check failed"); diskscope reports it as corruption (exit 2) with the entry's offset,
/// marks its range invalid in the map (qemu-img map prints it as data), and refuses to
/// convert it (QEMU would read zeros there).
#[test]
fn check_finds_a_grain_past_the_end() {
    let d = Scratch::new();
    let img = vmdk(&d, "bad.vmdk", 2 * MIB, "monolithicSparse", false, None);
    qemu_io(&d, "vmdk", "bad.vmdk", &["write -q -P 0x71 0 256k".into()]);
    assert_eq!(diskscope(&[&"check", &img]).code, Some(0));
    let b = fs::read(&img).unwrap();
    let le = |at: usize, n: usize| b[at..at + n].iter().rev().fold(0u64, |a, &x| a << 8 | x as u64);
    let gd = le(56, 8) * 512;
    let gt = le(gd as usize, 4) * 512;
    let entry = gt + 4 * 2;
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&0x00ff_ffffu32.to_le_bytes(), entry).unwrap();
    let q = qemu(&d, "qemu-img", &[&"check", &img]);
    assert_eq!(q.code, Some(1), "{}", q.all());
    assert!(q.all().contains("points after EOF"));
    let r = diskscope(&[&"check", &img, &"--json"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    let v = r.json();
    let hit = v["findings"].as_array().unwrap().iter().find(|f| f["code"] == "grain-past-end").unwrap_or_else(|| panic!("{}", short(&v)));
    assert_eq!(hit["offset"].as_u64(), Some(entry));
    assert!(hit["message"].as_str().unwrap().contains("points after EOF"));
    let map = diskscope(&[&"map", &img, &"--json"]).ok().json();
    assert!(map.as_array().unwrap().iter().any(|e| e["invalid"].as_u64() == Some(entry)), "{}", short(&map));
    assert_clean_failure(&diskscope(&[&"convert", &img, &d.path("bad.raw")]));
}

/// Layouts QEMU reads but does not create, written by hand: a "vmfs" descriptor with a VMFS
/// extent, and FLAT extents at offsets into files shared by several extents.
#[test]
fn hand_made_flat_descriptors_match_qemu() {
    let d = Scratch::new();
    let mut rng = Rng::new(0xf1a7_0001);
    let pattern = pattern_file(&d, &mut rng);
    for (name, size) in [("pool.bin", 3 * MIB), ("other.bin", 2 * MIB), ("v-flat.vmdk", 2 * MIB)] {
        raw(&d, name, size);
        qemu_io(&d, "raw", name, &random_commands(&mut rng, size, GRAIN, &pattern, Mix { writes: 30, max_sectors: 256, zeroes: false, discards: false }));
    }
    let head = |ct: &str| format!("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"{}\"\n\n# Extent description\n", ct);
    let vmfs = head("vmfs") + "RW 4096 VMFS \"v-flat.vmdk\"\n";
    let shared = head("monolithicFlat") + "RW 2048 FLAT \"pool.bin\" 4096\nRW 1024 FLAT \"other.bin\" 8\nRW 1000 FLAT \"pool.bin\" 17\nRW 24 FLAT \"other.bin\" 4000\n";
    for (name, text) in [("vmfs.vmdk", vmfs), ("shared.vmdk", shared)] {
        fs::write(d.path(name), text).unwrap();
        matches_qemu(&d, &d.path(name), name);
        let r = diskscope(&[&"check", &d.path(name)]);
        assert_eq!(r.code, Some(0), "{}", r.all());
    }
}

/// A stream-optimized file as VMware writes it (the grain directory and tables after the
/// grains, each after its marker, then a footer marker, the footer with the real gdOffset
/// and the end-of-stream marker): QEMU reads it through the footer, and so must we.
#[test]
fn vmware_stream_optimized_layout_matches_qemu() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x5_7ea_0002);
    // Not a multiple of the grain; grains compressible, random and absent.
    let size = 3 * MIB + 8 * KIB;
    let mut disk = vec![0u8; size as usize];
    for g in 0..size.div_ceil(GRAIN) {
        let (a, b) = ((g * GRAIN) as usize, ((g + 1) * GRAIN).min(size) as usize);
        match rng.below(3) {
            0 => {}
            1 => disk[a..b].copy_from_slice(&rng.bytes(b - a)),
            _ => disk[a..b].iter_mut().enumerate().for_each(|(i, x)| *x = (i / 300) as u8 | 1),
        }
    }
    fs::write(d.path("stream.raw"), &disk).unwrap();
    let img = d.path("vm.vmdk");
    fs::write(&img, vmware_stream(&disk, "vm.vmdk")).unwrap();
    let out = matches_qemu(&d, &img, "vm.vmdk");
    assert_same_bytes(&out, &d.path("stream.raw"), "vm.vmdk against the disk it was made from");
    let r = diskscope(&[&"check", &img]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    let info = diskscope(&[&"info", &img]).ok();
    for want in ["grain table marker", "footer marker", "end-of-stream marker", "footer gdOffset"] {
        assert!(info.stdout.contains(want), "info should show the {}:\n{}", want, info.stdout);
    }
}

/// The bytes of a VMware-style stream-optimized file holding `disk` (64 KiB grains, all-zero
/// grains left out), written from the tables of the Virtual Disk Format 1.1.
fn vmware_stream(disk: &[u8], name: &str) -> Vec<u8> {
    let size = disk.len() as u64;
    let sectors = size.div_ceil(512);
    let header = |gd: u64| {
        let mut h = vec![0u8; 512];
        h[0..4].copy_from_slice(b"KDMV");
        h[4..8].copy_from_slice(&3u32.to_le_bytes());
        h[8..12].copy_from_slice(&0x3_0001u32.to_le_bytes()); // newline test, compressed, markers
        h[12..20].copy_from_slice(&sectors.to_le_bytes());
        h[20..28].copy_from_slice(&128u64.to_le_bytes());
        h[28..36].copy_from_slice(&1u64.to_le_bytes());
        h[36..44].copy_from_slice(&20u64.to_le_bytes());
        h[44..48].copy_from_slice(&512u32.to_le_bytes());
        h[56..64].copy_from_slice(&gd.to_le_bytes());
        h[64..72].copy_from_slice(&128u64.to_le_bytes());
        h[73..77].copy_from_slice(b"\n \r\n");
        h[77..79].copy_from_slice(&1u16.to_le_bytes());
        h
    };
    let marker = |f: &mut Vec<u8>, val: u64, ty: u32| {
        let mut m = vec![0u8; 512];
        m[0..8].copy_from_slice(&val.to_le_bytes());
        m[12..16].copy_from_slice(&ty.to_le_bytes());
        f.extend_from_slice(&m);
    };
    let mut f = header(u64::MAX);
    let desc = format!("# Disk DescriptorFile\nversion=1\nCID=0badcafe\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n\
RW {} SPARSE \"{}\"\n\nddb.adapterType = \"lsilogic\"\n", sectors, name);
    f.extend_from_slice(desc.as_bytes());
    f.resize(128 * 512, 0);
    let grains = size.div_ceil(GRAIN);
    let mut gte = vec![0u32; grains.div_ceil(512) as usize * 512];
    for g in 0..grains {
        let part = &disk[(g * GRAIN) as usize..((g + 1) * GRAIN).min(size) as usize];
        if part.iter().all(|&b| b == 0) {
            continue;
        }
        gte[g as usize] = (f.len() / 512) as u32;
        let c = stored_zlib(part);
        f.extend_from_slice(&(g * 128).to_le_bytes());
        f.extend_from_slice(&(c.len() as u32).to_le_bytes());
        f.extend_from_slice(&c);
        f.resize(f.len().next_multiple_of(512), 0);
    }
    let mut gd = Vec::new();
    for t in gte.chunks(512) {
        marker(&mut f, 4, 1);
        gd.push((f.len() / 512) as u32);
        t.iter().for_each(|e| f.extend_from_slice(&e.to_le_bytes()));
    }
    marker(&mut f, 1, 2);
    let gd_at = (f.len() / 512) as u64;
    gd.iter().for_each(|e| f.extend_from_slice(&e.to_le_bytes()));
    f.resize(f.len().next_multiple_of(512), 0);
    marker(&mut f, 1, 3);
    f.extend_from_slice(&header(gd_at));
    marker(&mut f, 0, 0);
    f
}

/// `data` as a zlib stream of stored (uncompressed) deflate blocks: valid zlib that every
/// reader must accept, made without a compression crate (the qemu-made stream-optimized
/// test covers really compressed grains).
fn stored_zlib(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push((i + 1 == chunks.len()) as u8);
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        out.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A chain across formats: a qcow2 overlay over a VMDK base (sparse, and stream-optimized
/// with compressed grains), each written at random.
#[test]
fn qcow2_over_a_vmdk_base() {
    let d = Scratch::new();
    let mut rng = Rng::new(0x9c02_0001);
    let pattern = pattern_file(&d, &mut rng);
    let size = 4 * MIB + 512;
    vmdk(&d, "sparse-base.vmdk", size, "monolithicSparse", false, None);
    qemu_io(&d, "vmdk", "sparse-base.vmdk", &random_commands(&mut rng, size, GRAIN, &pattern, mix(60)));
    raw(&d, "src.raw", size);
    qemu_io(&d, "raw", "src.raw", &random_commands(&mut rng, size, GRAIN, &pattern, Mix { writes: 60, max_sectors: 200, zeroes: false, discards: false }));
    qemu(&d, "qemu-img", &[&"convert", &"-O", &"vmdk", &"-o", &"subformat=streamOptimized", &"src.raw", &"stream-base.vmdk"]).ok();
    for base in ["sparse-base.vmdk", "stream-base.vmdk"] {
        let top = format!("over-{}.qcow2", base);
        create(&d, &top, size, Create { fmt: "qcow2", cluster: None, table_size: None, backing: Some((base, "vmdk")) });
        qemu_io(&d, "qcow2", &top, &random_commands(&mut rng, size, GRAIN, &pattern, mix(40)));
        matches_qemu(&d, &d.path(&top), &top);
    }
}
