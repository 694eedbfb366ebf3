//! VHD images ("vpc") made by qemu-img and qemu-io: dynamic and fixed, with QEMU's CHS
//! size rule and with force_size=on. `diskscope convert` must write qemu-img convert's
//! bytes and `diskscope map --json` print qemu-img map's array. A fixed VHD has no header
//! at its start, so qemu-img is told the format (it would probe raw); diskscope finds the
//! footer at the end by itself. qemu-img cannot make differencing VHDs: one is written here
//! from the spec over a qemu-made parent, and must read as the child's sectors over it.
mod common;
use std::path::{Path, PathBuf};

use common::*;

const SIZES: [u64; 2] = [5 * MIB, 3 * MIB + 4 * KIB + 512];
const BLOCK: u64 = 2 * MIB;

fn vpc(d: &Scratch, name: &str, size: u64, opts: &str) -> PathBuf {
    create_with(d, name, size, "vpc", opts)
}

#[test]
fn empty_images() {
    let d = Scratch::new();
    for opts in ["", "force_size=on", "subformat=fixed", "subformat=fixed,force_size=on"] {
        for size in SIZES {
            let name = format!("empty-{}-{}.vhd", opts.replace([',', '='], "-"), size);
            let img = vpc(&d, &name, size, opts);
            let out = matches_qemu_as(&d, &img, "vpc", &name);
            let info = diskscope(&[&"info", &img, &"--json"]).ok().json();
            assert_eq!(info["format"], "vpc", "{}", info);
            // QEMU's sizes: the CHS geometry rounds up, force_size keeps the size asked for.
            let q = qemu(&d, "qemu-img", &[&"info", &"-f", &"vpc", &"--output=json", &img]).ok().json();
            assert_eq!(info["virtual-size"], q["virtual-size"], "{}: virtual size", name);
            assert_eq!(file_len(&out), q["virtual-size"].as_u64().unwrap());
        }
    }
}

#[test]
fn random_writes_zeroes_and_discards() {
    let seeds: u64 = std::env::var("DISKSCOPE_TEST_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for seed in 0x7bc_0000..0x7bc_0000 + seeds {
        let d = Scratch::new();
        let mut rng = Rng::new(seed);
        let pattern = pattern_file(&d, &mut rng);
        for opts in ["", "force_size=on", "subformat=fixed"] {
            let size = SIZES[1];
            let name = format!("random-{}.vhd", opts.replace([',', '='], "-"));
            let img = vpc(&d, &name, size, opts);
            let mix = Mix { writes: 150, max_sectors: 64, zeroes: true, discards: true };
            let vsize = diskscope(&[&"info", &img, &"--json"]).ok().json()["virtual-size"].as_u64().unwrap();
            qemu_io(&d, "vpc", &name, &random_commands(&mut rng, vsize, BLOCK, &pattern, mix));
            matches_qemu_as(&d, &img, "vpc", &format!("{} (seed {:#x})", name, seed));
        }
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// One's complement of the byte sum, the checksum field counted as zeros.
fn vhd_checksum(b: &[u8], field: usize) -> [u8; 4] {
    let sum = b.iter().enumerate().filter(|(i, _)| !(field..field + 4).contains(i)).fold(0u32, |s, (_, &x)| s.wrapping_add(x as u32));
    (!sum).to_be_bytes()
}

/// A differencing child over `parent` (a qemu-made dynamic VHD in `dir`), written from the
/// spec: footer type 4 with a new UUID, the parent's UUID and name in the dynamic header, a
/// W2ru locator, and one block whose bitmap marks sectors 8..16 as the child's.
fn child_of(parent: &Path, child: &Path, locator: &str) {
    let p = std::fs::read(parent).unwrap();
    let bat_at = u64::from_be_bytes(p[512 + 16..512 + 24].try_into().unwrap()) as usize;
    let entries = be32(&p, 512 + 28) as usize;
    let bat_end = bat_at + (entries * 4).div_ceil(512) * 512;
    let mut c = p[..bat_end].to_vec();
    let parent_uuid: Vec<u8> = p[68..84].to_vec();
    c[60..64].copy_from_slice(&4u32.to_be_bytes());
    c[68..84].copy_from_slice(&[0xc5; 16]);
    let h = 512;
    c[h + 40..h + 56].copy_from_slice(&parent_uuid);
    c[h + 56..h + 60].copy_from_slice(&p[24..28]); // the parent's timestamp
    let name: Vec<u8> = "base.vhd".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    c[h + 64..h + 64 + name.len()].copy_from_slice(&name);
    let loc: Vec<u8> = locator.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let loc_at = c.len();
    c.resize(loc_at + 512, 0);
    c[loc_at..loc_at + loc.len()].copy_from_slice(&loc);
    c[h + 576..h + 580].copy_from_slice(b"W2ru");
    c[h + 580..h + 584].copy_from_slice(&512u32.to_be_bytes());
    c[h + 584..h + 588].copy_from_slice(&(loc.len() as u32).to_be_bytes());
    c[h + 592..h + 600].copy_from_slice(&(loc_at as u64).to_be_bytes());
    for i in 0..entries {
        c[bat_at + 4 * i..bat_at + 4 * i + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    }
    // Block 1: bitmap with sectors 8..16 set, data 0x5c there (and junk elsewhere, unread).
    let block_at = c.len();
    c[bat_at + 4..bat_at + 8].copy_from_slice(&((block_at / 512) as u32).to_be_bytes());
    c.resize(block_at + 512 + BLOCK as usize, 0xee);
    c[block_at..block_at + 512].fill(0);
    c[block_at + 1] = 0xff;
    c[block_at + 512 + 8 * 512..block_at + 512 + 16 * 512].fill(0x5c);
    let sum = vhd_checksum(&c[h..h + 1024], 36);
    c[h + 36..h + 40].copy_from_slice(&sum);
    let sum = vhd_checksum(&c[..512], 64);
    c[64..68].copy_from_slice(&sum);
    let footer = c[..512].to_vec();
    c.extend(footer);
    std::fs::write(child, c).unwrap();
}

#[test]
fn differencing_child_over_a_qemu_parent() {
    let d = Scratch::new();
    std::fs::create_dir_all(d.path("vm")).unwrap();
    let size = 5 * MIB;
    let base = vpc(&d, "vm/base.vhd", size, "");
    qemu_io(&d, "vpc", "vm/base.vhd", &["write -q -P 0x61 0 3M".into(), "write -q -P 0x62 4M 512k".into()]);
    let parent_raw = d.path("base.raw");
    qemu(&d, "qemu-img", &[&"convert", &"-O", &"raw", &base, &parent_raw]).ok();
    let child = d.path("vm/child.vhd");
    child_of(&base, &child, ".\\base.vhd");
    let ours = d.path("child.raw");
    diskscope(&[&"convert", &child, &ours]).ok();
    let mut want = std::fs::read(&parent_raw).unwrap();
    let s = (BLOCK + 8 * 512) as usize;
    want[s..s + 8 * 512].fill(0x5c);
    assert!(std::fs::read(&ours).unwrap() == want, "child over parent reads wrong");
    let info = diskscope(&[&"info", &child, &"--json"]).ok().json();
    assert_eq!(info["backing-filename"], "base.vhd", "{}", info);
    assert!(info.get("chain-findings").is_none(), "the parent's UUID matches: {}", info);
    // The map: the child's sectors at depth 0, the parent's data at depth 1.
    let map = diskscope(&[&"map", &child, &"--json"]).ok().json();
    let at = |g: u64| map.as_array().unwrap().iter().find(|e| e["start"].as_u64().unwrap() <= g && g < e["start"].as_u64().unwrap() + e["length"].as_u64().unwrap()).unwrap().clone();
    assert_eq!((at(BLOCK + 8 * 512)["depth"].as_u64(), at(BLOCK + 8 * 512)["data"].as_bool()), (Some(0), Some(true)));
    assert_eq!((at(BLOCK)["depth"].as_u64(), at(BLOCK)["data"].as_bool()), (Some(1), Some(true)));
    // A locator that names nothing: the parent is found in the folder by its UUID.
    let lost = d.path("vm/lost.vhd");
    child_of(&base, &lost, ".\\gone\\old-name.vhd");
    let info = diskscope(&[&"info", &lost, &"--json"]).ok().json();
    assert!(info["full-backing-filename"].as_str().unwrap_or_default().ends_with("vm/base.vhd"), "{}", info);
}
