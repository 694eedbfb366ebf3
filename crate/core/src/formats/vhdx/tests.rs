//! VHDX images written from MS-VHDX by the writer in sample.rs (headers, region tables,
//! metadata, BAT with payload and sector bitmap entries, the log with CRC-32C), read back
//! through the chain: a dirty log replayed in memory (and shown as stored on request), a
//! differencing disk over its parent found by parent_linkage, and random mutations that
//! must never make the reader panic.
use alloc::{sync::Arc, vec, vec::Vec};
use proptest::prelude::*;

use super::structs::*;
use super::*;
use crate::chain::Chain;
use crate::image::OpenOptions;
use crate::io::MemFile;
use crate::testutil::Files;

pub(crate) use super::sample::{log_entry, LogDesc, Writer, BAT_AT, LOG_AT, META_AT};

fn read_all(c: &Chain) -> Vec<u8> {
    let mut b = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut b).unwrap();
    b
}

fn open(img: &[u8], as_stored: bool) -> Chain {
    let files = Files::new([("a.vhdx", img.to_vec())]);
    Chain::open_with("a.vhdx", Arc::new(MemFile(img.to_vec())), None, &files, &OpenOptions { as_stored, snapshot: None }).unwrap()
}

#[test]
fn fields_have_their_offsets_and_values() {
    let w = Writer::new(5 * MIB, MIB, [0xd1; 16], None);
    let c = open(&w.file, false);
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {} in {:?}", n, fields)).clone();
    assert_eq!(get("creator").value, "\"diskscope test writer\"");
    assert_eq!((get("header 2 sequence_number").offset, get("header 2 sequence_number").value.as_str()), (HEADER2_AT + 8, "2 (current: the valid header with the larger number)"));
    assert_eq!(get("header 1 sequence_number").value, "1");
    assert!(get("header 1 checksum").value.ends_with("(correct)"));
    assert_eq!((get("header 2 log_offset").offset, get("header 2 log_offset").value.as_str()), (HEADER2_AT + 72, "1048576"));
    assert_eq!(get("header 2 data_write_guid").value, "d1d1d1d1-d1d1-d1d1-d1d1-d1d1d1d1d1d1");
    assert!(get("region 0").value.starts_with("BAT 2dc27766-f623-4200-9d64-115e9bfd4a08: 1048576 bytes at 3145728, required"), "{}", get("region 0").value);
    assert_eq!(get("region table copy").value, "identical to the table at 196608");
    assert_eq!((get("block_size").offset, get("block_size").value.as_str()), (META_AT + 65536, "1 MiB (1048576 bytes)"));
    assert_eq!(get("virtual_disk_size").value, "5 MiB (5242880 bytes)");
    assert_eq!((get("logical_sector_size").value.as_str(), get("physical_sector_size").value.as_str()), ("512 bytes", "4096 bytes"));
    assert_eq!(get("page_83_data").value, "83838383-8383-8383-8383-838383838383");
    assert!(get("BAT").value.starts_with("5 entries (5 payload blocks"), "{}", get("BAT").value);
    let i = c.top().info();
    assert_eq!((i.format, i.virtual_size, i.cluster_size, i.dirty), ("vhdx", 5 * MIB, MIB, false));
    assert_eq!(c.top().identity().as_deref(), Some("vhdx-guid:d1d1d1d1-d1d1-d1d1-d1d1-d1d1d1d1d1d1"));
}

#[test]
fn payload_states_read_as_qemu_reads_them() {
    let mut w = Writer::new(6 * MIB, MIB, [1; 16], None);
    let mut model = vec![0u8; 6 * MIB as usize];
    w.write(0, &[0x11; 4096]);
    model[..4096].fill(0x11);
    w.write(2 * MIB + 512, &[0x22; 1024]);
    model[2 * MIB as usize + 512..2 * MIB as usize + 1536].fill(0x22);
    for (i, state) in [(1u64, ZERO), (3, UNMAPPED), (4, UNDEFINED)] {
        let at = w.payload_entry_at(i);
        w.set(at, state);
    }
    let c = open(&w.file, false);
    assert_eq!(read_all(&c), model);
    let mut e = Vec::new();
    c.map(0, 6 * MIB, &mut e).unwrap();
    let kinds: Vec<_> = e.iter().map(|x| (x.start / MIB, x.present, x.zero, x.data)).collect();
    assert_eq!(kinds, [(0, true, false, true), (1, true, true, false), (2, true, false, true), (3, true, true, false), (5, false, true, false)]);
    let r = c.top().check().unwrap();
    assert_eq!(r.corruptions, 0, "{:?}", r.findings);
    // PARTIALLY_PRESENT without a parent: QEMU fails to read it; an invalid mapping here.
    let at = w.payload_entry_at(2);
    let v = w.get(at);
    w.set(at, v & !7 | PARTIALLY_PRESENT);
    let c = open(&w.file, false);
    let mut buf = vec![0u8; 512];
    assert!(matches!(c.read(2 * MIB, &mut buf), Err(crate::Error::CorruptMapping { offset, .. }) if offset == at));
    assert!(c.top().check().unwrap().findings.iter().any(|f| f.code == "partial-without-parent"));
}

/// A dirty log: block 1's data written, its BAT entry updated only in the log (entry 1),
/// then entry 2 zeroing the BAT page again and rewriting it with block 1 and block 2,
/// and entry 3 patching a sector of block 0's data. A stale entry from an older session
/// sits further on and must not apply.
fn dirty() -> (Writer, Vec<u8>, Vec<u8>) {
    let mut w = Writer::new(4 * MIB, MIB, [2; 16], None);
    let mut stored = vec![0u8; 4 * MIB as usize];
    let b0 = w.write(0, &[0x10; 8192]);
    stored[..8192].fill(0x10);
    let mut replayed = stored.clone();
    // Blocks 1 and 2 are on disk, but the BAT does not point at them yet.
    let b1 = w.append(MIB);
    w.file[b1 as usize..(b1 + MIB) as usize].fill(0x21);
    let b2 = w.append(MIB);
    w.file[b2 as usize..(b2 + MIB) as usize].fill(0x22);
    let mut page = w.file[BAT_AT as usize..BAT_AT as usize + 4096].to_vec();
    page[8..16].copy_from_slice(&(b1 | FULLY_PRESENT).to_le_bytes());
    let mut page2 = page.clone();
    page2[16..24].copy_from_slice(&(b2 | FULLY_PRESENT).to_le_bytes());
    let guid = [0x77; 16];
    let len = w.file.len() as u64;
    let e1 = log_entry(5, guid, 0, &[LogDesc::Data(BAT_AT, page)], len, len);
    let e2 = log_entry(6, guid, 0, &[LogDesc::Zero(BAT_AT, 4096), LogDesc::Data(BAT_AT, page2)], len, len);
    let mut patch = vec![0x10u8; 4096];
    patch[100..200].fill(0x5a);
    let e3 = log_entry(7, guid, 0, &[LogDesc::Data(b0 + 4096, patch)], len, len);
    let stale = log_entry(4, [0x66; 16], 0, &[LogDesc::Zero(BAT_AT, 4096)], len, len);
    let mut at = LOG_AT as usize;
    for e in [&e1, &e2, &e3] {
        w.file[at..at + e.len()].copy_from_slice(e);
        at += e.len();
    }
    let s = (LOG_AT + 512 * 1024) as usize;
    w.file[s..s + stale.len()].copy_from_slice(&stale);
    w.set_log_guid(guid);
    replayed[MIB as usize..2 * MIB as usize].fill(0x21);
    replayed[2 * MIB as usize..3 * MIB as usize].fill(0x22);
    replayed[4096 + 100..4096 + 200].fill(0x5a);
    (w, stored, replayed)
}

#[test]
fn a_dirty_log_is_replayed_in_memory_and_shown_as_stored_on_request() {
    let (w, stored, replayed) = dirty();
    let before = w.file.clone();
    let c = open(&w.file, false);
    assert!(c.top().info().dirty);
    assert_eq!(read_all(&c), replayed);
    let recs = c.top().records();
    assert_eq!(recs.len(), 4, "{:?}", recs);
    assert_eq!(recs.iter().filter(|r| r.applied).count(), 3);
    let stale = recs.iter().find(|r| r.offset == LOG_AT + 512 * 1024).unwrap();
    assert!(stale.stale && !stale.applied, "{:?}", stale);
    assert!(recs[1].fields.iter().any(|(k, v)| k == "descriptor 0" && v == "4096 zero bytes to byte 0x300000"), "{:?}", recs[1]);
    let r = c.top().check().unwrap();
    let dirty = r.findings.iter().find(|f| f.code == "log-dirty").expect("a finding says the log was replayed");
    assert_eq!(dirty.severity, crate::Severity::Warning);
    assert_eq!(r.corruptions, 0, "{:?}", r.findings);
    // The patched sector of block 0 is read through the overlay (computed), the rest stored.
    let mut e = Vec::new();
    c.map(0, MIB, &mut e).unwrap();
    assert!(e.iter().any(|x| x.computed && x.start == 4096), "{:?}", e);
    // As stored: the BAT as on disk, nothing applied.
    let s = open(&w.file, true);
    assert_eq!(read_all(&s), stored);
    assert!(s.top().records().iter().all(|r| !r.applied));
    assert!(s.top().check().unwrap().findings.iter().any(|f| f.code == "log-dirty"));
    assert_eq!(w.file, before, "nothing is written");
}

#[test]
fn a_log_entry_with_a_bad_checksum_is_not_replayed() {
    let (mut w, stored, _) = dirty();
    // Break entry 1: the sequence then starts at entry 2, which zeroes and rewrites the page.
    w.file[LOG_AT as usize + 4096 + 10] ^= 1;
    let c = open(&w.file, false);
    let recs = c.top().records();
    assert!(recs[0].note.contains("checksum"), "{:?}", recs[0]);
    assert!(!recs[0].applied && recs[1].applied);
    assert_ne!(read_all(&c), stored);
}

#[test]
fn a_differencing_disk_reads_its_sectors_over_the_parent() {
    let size = 3 * MIB;
    let mut parent = Writer::new(size, MIB, [0xaa; 16], None);
    parent.write(0, &vec![0x50; MIB as usize]);
    parent.write(2 * MIB, &[0x52; 4096]);
    let mut child = Writer::new(size, MIB, [0xcc; 16], Some(("{AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA}", ".\\parent.vhdx")));
    child.write(4096, &[0x61; 1024]);
    child.write(2 * MIB + 8192, &[0x62; 512]);
    let mut model = vec![0u8; size as usize];
    model[..MIB as usize].fill(0x50);
    model[2 * MIB as usize..2 * MIB as usize + 4096].fill(0x52);
    model[4096..5120].fill(0x61);
    model[2 * MIB as usize + 8192..2 * MIB as usize + 8704].fill(0x62);
    let c = Files::new([("child.vhdx", child.file.clone()), ("parent.vhdx", parent.file.clone())]).open("child.vhdx").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    assert_eq!(c.top().info().backing.as_ref().unwrap().name, "parent.vhdx");
    assert_eq!(c.top().backing_identity().as_deref(), Some("vhdx-guid:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"));
    assert!(c.findings.is_empty(), "{:?}", c.findings);
    assert_eq!(read_all(&c), model);
    let fields = c.top().header_fields();
    assert!(fields.iter().any(|f| f.name == "parent absolute_win32_path" && f.value == "\"D:\\\\VMs\\\\.\\\\parent.vhdx\""), "{:?}", fields);
    let r = c.top().check().unwrap();
    assert_eq!(r.corruptions, 0, "{:?}", r.findings);
    // Fuzz seeds: line coverage showed the parent locator and partial blocks unreached.
    for target in ["fmt_vhdx", "chain"] {
        crate::testutil::fuzz_seed(target, "vhdx-differencing", &[&child.file, &parent.file]);
    }
    // Renamed parent: found by its data_write_guid among the files beside the child.
    let c = crate::formats::vdi::tests::Folder(Files::new([("child.vhdx", child.file.clone()), ("p2.vhdx", parent.file)])).open("child.vhdx").unwrap();
    assert_eq!((c.layers.len(), c.layers[1].name.as_str()), (2, "p2.vhdx"));
}

/// Partially present blocks are a run per sector at worst, and a walk's step stops before
/// more; not-present blocks are a run each, and a 2 TiB disk of them is one step (a step of
/// 256 MiB of sectors made it 8,192).
#[test]
fn a_walk_steps_by_what_each_block_can_hold() {
    let mut parent = Writer::new(4 * MIB, MIB, [0xaa; 16], None);
    parent.write(0, &[1; 4096]);
    let mut child = Writer::new(4 * MIB, MIB, [0xcc; 16], Some(("{AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA}", ".\\parent.vhdx")));
    for s in (0..64).step_by(2) {
        child.write(MIB + s * 512, &[2; 512]);
    }
    let c = Files::new([("child.vhdx", child.file.clone()), ("parent.vhdx", parent.file)]).open("child.vhdx").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    crate::testutil::assert_steps_hold_their_budget("child.vhdx", &c);

    let mut w = Writer::new(2 << 40, 32 * MIB, [0xdd; 16], None);
    w.write(1 << 40, &[3; 512]);
    let c = open(&w.file, false);
    let (steps, runs) = crate::testutil::walk(&c);
    assert!(steps <= 3, "{} steps", steps);
    assert_eq!(runs, [(0, 1 << 40, false), (1 << 40, 32 * MIB, true), ((1 << 40) + 32 * MIB, (1 << 40) - 32 * MIB, false)]);
}

#[test]
fn sector_bitmaps_count_logical_sectors() {
    // 4 KiB logical sectors: one bitmap bit per 4 KiB; a chunk of 32768 blocks.
    let size = 3 * MIB;
    let mut parent = Writer::new(size, MIB, [0xab; 16], None).with_4k_sectors();
    parent.write(0, &vec![0x40; 3 * MIB as usize / 3]);
    let mut child = Writer::new(size, MIB, [0xcd; 16], Some(("{abababab-abab-abab-abab-abababababab}", "p.vhdx"))).with_4k_sectors();
    child.write(3 * 4096, &[0x41; 8192]);
    child.write(MIB + MIB - 4096, &[0x42; 4096]);
    let c = Files::new([("c.vhdx", child.file.clone()), ("p.vhdx", parent.file.clone())]).open("c.vhdx").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    let mut model = vec![0u8; size as usize];
    model[..MIB as usize].fill(0x40);
    model[3 * 4096..5 * 4096].fill(0x41);
    model[2 * MIB as usize - 4096..2 * MIB as usize].fill(0x42);
    assert_eq!(read_all(&c), model);
    let f = c.top().header_fields();
    assert!(f.iter().any(|x| x.name == "BAT" && x.value.contains("after every 32768")), "{:?}", f.iter().find(|x| x.name == "BAT"));
    crate::testutil::fuzz_seed("fmt_vhdx", "differencing-4k-sectors", &[&child.file, &parent.file]);
}

#[test]
fn check_counts_bat_entries_as_qemu_does() {
    let mut w = Writer::new(4 * MIB, MIB, [3; 16], None);
    w.write(0, &[1; 512]);
    w.write(MIB, &[2; 512]);
    let len = w.file.len() as u64;
    w.set(w.payload_entry_at(2), (len + 16 * MIB) | FULLY_PRESENT); // past the end of the file
    w.set(w.payload_entry_at(3), META_AT | FULLY_PRESENT); // over the metadata region
    let c = open(&w.file, false);
    let r = c.top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().filter(|f| f.severity == crate::Severity::Corruption).map(|f| (f.code, f.offset)).collect();
    assert_eq!(codes, [("block-past-end", Some(BAT_AT + 16)), ("block-over-region", Some(BAT_AT + 24))]);
    assert_eq!(r.exit_code(), 2);
    let mut buf = vec![0u8; 512];
    assert!(matches!(c.read(2 * MIB, &mut buf), Err(crate::Error::CorruptMapping { offset, .. }) if offset == BAT_AT + 16));
}

#[test]
fn damaged_headers_and_region_tables_fall_back_to_their_copies() {
    let mut w = Writer::new(2 * MIB, MIB, [4; 16], None);
    w.write(0, &[9; 512]);
    let mut f = w.file.clone();
    f[HEADER2_AT as usize + 100] ^= 1; // header 2 (current) damaged: header 1 is used
    f[REGION1_AT as usize + 20] ^= 1; // region table 1 damaged: the copy is used
    let c = open(&f, false);
    let mut b = vec![0u8; 512];
    c.read(0, &mut b).unwrap();
    assert_eq!(b, vec![9u8; 512]);
    let codes: Vec<_> = c.top().check().unwrap().findings.iter().map(|f| f.code).collect();
    assert!(codes.contains(&"header-invalid") && codes.contains(&"region-table-invalid"), "{:?}", codes);
    f[HEADER1_AT as usize + 100] ^= 1;
    assert!(matches!(Files::new([("a.vhdx", f)]).open("a.vhdx"), Err(crate::Error::Invalid { offset, .. }) if offset == HEADER1_AT));
}

#[test]
fn reads_stay_few() {
    // After the two reads of probing: the header section, the log, the metadata and the
    // BAT, whatever the number of blocks.
    let mut w = Writer::new(64 * MIB, MIB, [5; 16], None);
    for i in (0..64).step_by(2) {
        w.write(i * MIB, &[1; 512]);
    }
    let n = crate::formats::vdi::tests::reads_to_map("a.vhdx", &w.file);
    assert!(n <= 6, "{} reads", n);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    /// Mutations in the headers, region table, log, metadata and BAT.
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..6, 0usize..8192, any::<u64>()), 1..8), as_stored in any::<bool>()) {
        static DIRTY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let mut f = DIRTY.get_or_init(|| dirty().0.file).clone();
        for (area, at, v) in muts {
            let base = [HEADER2_AT, REGION1_AT, LOG_AT, META_AT, META_AT + 65536 - 4096, BAT_AT][area] as usize;
            let at = (base + at).min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        let files = Files::new([("a.vhdx", f.clone())]);
        if let Ok(chain) = Chain::open_with("a.vhdx", Arc::new(MemFile(f)), None, &files, &OpenOptions { as_stored, snapshot: None }) {
            let size = chain.virtual_size();
            let mut entries = Vec::new();
            let _ = chain.map(0, size.min(64 << 20), &mut entries);
            let _ = chain.top().check();
            let _ = chain.top().records();
            let mut buf = vec![0u8; 8192];
            if size >= 8192 {
                let _ = chain.read(0, &mut buf);
                let _ = chain.read(size - 8192, &mut buf);
            }
            let _ = crate::report::Report::new(&chain);
        }
    }
}

/// A clean disk and the dirty-log disk replay to what they hold; each is also a fuzz seed.
#[test]
fn fuzz_seeds_read_as_written() {
    let (w, _, replayed) = dirty();
    assert_eq!(read_all(&open(&w.file, false)), replayed);
    crate::testutil::fuzz_seed("fmt_vhdx", "dirty-log", &[&w.file]);
    let mut w = Writer::new(2 * MIB, MIB, [3; 16], None);
    w.write(MIB + 512, &[0x33; 1024]);
    let got = read_all(&open(&w.file, false));
    assert!(got[MIB as usize + 512..MIB as usize + 1536].iter().all(|&b| b == 0x33) && got.iter().filter(|&&b| b != 0).count() == 1024);
    crate::testutil::fuzz_seed("fmt_vhdx", "clean", &[&w.file]);
}
