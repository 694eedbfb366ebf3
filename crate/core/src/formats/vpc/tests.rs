//! VHD images written from the spec's tables by the writer in sample.rs: fixed, dynamic, and a
//! differencing chain (which qemu-img cannot make) with parent locators, UUIDs and correct
//! checksums; read back through the chain, checked, and mutated at random to prove no
//! input makes the reader panic.
use alloc::{vec, vec::Vec};
use proptest::prelude::*;

use super::footer::{at, checksum};
use crate::chain::Chain;
use crate::formats::vdi::tests::Folder;
use crate::testutil::Files;

pub(crate) use super::sample::{fixed, footer, utf16le, Parent, Writer};

fn read_all(c: &Chain) -> Vec<u8> {
    let mut b = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut b).unwrap();
    b
}

#[test]
fn footer_and_header_fields_have_their_offsets_and_values() {
    let w = Writer::new(3 << 20, 1 << 20, [0x11; 16], None);
    let c = Files::new([("a.vhd", w.finish())]).open("a.vhd").unwrap();
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {} in {:?}", n, fields)).clone();
    assert_eq!((get("cookie").offset, get("cookie").size, get("cookie").value.as_str()), (0, 8, "\"conectix\""));
    assert_eq!((get("data_offset").offset, get("data_offset").value.as_str()), (16, "512"));
    assert_eq!(get("timestamp").value, "536870912 = 2017-01-04 18:48:32 UTC");
    assert_eq!(get("creator_application").value, "\"win \"");
    assert_eq!((get("current_size").offset, get("current_size").value.as_str()), (48, "3 MiB (3145728 bytes)"));
    assert_eq!(get("disk_geometry").value, "100 cylinders, 4 heads, 17 sectors/track = 6800 sectors (3400 KiB (3481600 bytes))");
    assert_eq!((get("disk_type").offset, get("disk_type").value.as_str()), (60, "3 = dynamic"));
    assert!(get("checksum").value.ends_with("(correct)"), "{}", get("checksum").value);
    assert_eq!(get("unique_id").value, "11111111-1111-1111-1111-111111111111");
    assert_eq!((get("table_offset").offset, get("table_offset").value.as_str()), (512 + 16, "1536"));
    assert_eq!((get("max_table_entries").offset, get("max_table_entries").value.as_str()), (512 + 28, "3"));
    assert_eq!(get("block_size").value, "1 MiB (1048576 bytes)");
    assert!(get("header checksum").value.ends_with("(correct)"));
    assert_eq!(get("footer at the end").value, "identical to the footer at 0");
    let i = c.top().info();
    assert_eq!((i.format, i.virtual_size, i.cluster_size), ("vpc", 3 << 20, 1 << 20));
    assert_eq!(c.top().identity().as_deref(), Some("vhd-uuid:11111111-1111-1111-1111-111111111111"));
    let r = c.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.findings);
}

#[test]
fn the_size_rule_follows_the_creator() {
    // "qemu" and "vpc " images are as large as their geometry; others as current_size.
    let mut f = footer(3481600 + 4096, 2, u64::MAX, [1; 16], b"qemu");
    let mut img = vec![7u8; 3481600 + 4096];
    img.append(&mut f);
    let c = Files::new([("f.vhd", img.clone())]).open("f.vhd").unwrap();
    assert_eq!(c.virtual_size(), 3481600);
    let n = img.len();
    img[n - 512 + at::CREATOR_APP..n - 512 + at::CREATOR_APP + 4].copy_from_slice(b"wa\0\0");
    let c = checksum(&img[n - 512..], at::CHECKSUM);
    img[n - 512 + at::CHECKSUM..n - 512 + at::CHECKSUM + 4].copy_from_slice(&c.to_be_bytes());
    assert_eq!(Files::new([("f.vhd", img)]).open("f.vhd").unwrap().virtual_size(), 3481600 + 4096);
}

#[test]
fn fixed_disks_are_probed_by_their_footer_at_the_end() {
    // The disk's first bytes look like a QED header: the footer at the end decides.
    let mut data = vec![0u8; 1 << 20];
    data[..4].copy_from_slice(b"QED\0");
    data[5000] = 9;
    let img = fixed(&data, [2; 16]);
    let c = Files::new([("f.vhd", img)]).open("f.vhd").unwrap();
    assert_eq!((c.top().info().format, c.top().info().variant.as_str()), ("vpc", "VHD fixed"));
    assert_eq!(read_all(&c), data);
    assert_eq!(c.top().check().unwrap().corruptions, 0);
}

/// A 64 GiB fixed disk in a sparse host file: one run of the file's bytes, split where the
/// host has holes as the walk goes, in one step (by sectors, 256).
#[test]
fn a_sparse_fixed_disk_is_one_step() {
    use crate::io::SparseFile;
    use alloc::sync::Arc;
    let size = 64u64 << 30;
    let mut f = SparseFile { size: size + 512, chunks: Vec::new() };
    f.poke(1 << 30, &[7; 8192]);
    f.poke(size, &footer(size, 2, u64::MAX, [3; 16], b"win "));
    let c = Chain::open("f.vhd", Arc::new(f), None, &Files::default()).unwrap();
    assert_eq!(c.top().info().variant, "VHD fixed");
    crate::testutil::assert_steps_hold_their_budget("sparse fixed VHD", &c);
    let (steps, runs) = crate::testutil::walk(&c);
    assert_eq!(steps, 1);
    assert_eq!(runs, vec![(0, 1 << 30, true), (1 << 30, 8192, true), ((1 << 30) + 8192, size - (1 << 30) - 8192, true)]);
    let mut zero = Vec::new();
    c.for_each_entry(|e| Ok(zero.push(e.zero))).unwrap();
    assert_eq!(zero, [true, false, true], "holes read as zeros, as qemu-img map says");
}

#[test]
fn a_footer_that_does_not_describe_the_file_is_not_a_fixed_vhd() {
    // A QED image whose last sector happens to be a VHD footer (a VHD file in its data):
    // the footer says 1 MiB of disk, the file is larger: the QED header decides.
    let mut w = crate::formats::qed::tests::Writer::new(4096, 1, 8 << 20, None);
    w.write_cluster(0, 1);
    let mut img = w.file.clone();
    img.extend(vec![0u8; 4 << 20]);
    img.extend(footer(1 << 20, 2, u64::MAX, [7; 16], b"win "));
    let c = Files::new([("q.qed", img)]).open("q.qed").unwrap();
    assert_eq!(c.top().info().format, "qed");
}

#[test]
fn dynamic_bitmaps_decide_what_is_stored() {
    let (size, block) = (4u64 << 20, 1u64 << 20);
    let mut w = Writer::new(size, block, [3; 16], None);
    let mut model = vec![0u8; size as usize];
    for (off, len, fill) in [(0u64, 512usize, 1u8), (4096, 8192, 2), (block + 512 * 9, 512 * 3, 3), (3 * block + block - 512, 512, 4)] {
        w.write(off, &vec![fill; len]);
        model[off as usize..off as usize + len].fill(fill);
    }
    // Bytes stored under a clear bit are not data: the spec says the sector reads as zeros.
    let bm = w.entry(1) as usize * 512;
    let junk = bm + 512 + 512 * 100;
    w.file[junk..junk + 512].fill(0xee);
    let c = Files::new([("d.vhd", w.finish())]).open("d.vhd").unwrap();
    assert_eq!(read_all(&c), model);
    let mut entries = Vec::new();
    c.map(block, block, &mut entries).unwrap();
    let kinds: Vec<_> = entries.iter().map(|e| (e.start - block, e.length, e.data, e.zero)).collect();
    assert_eq!(kinds, [(0, 4608, false, true), (4608, 1536, true, false), (6144, block - 6144, false, true)]);
    let r = c.top().check().unwrap();
    assert_eq!(r.corruptions, 0, "{:?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "unwritten-sectors"), "{:?}", r.findings);
}

/// child.vhd (differencing, locators W2ru and W2ku) over base.vhd (dynamic): sectors the
/// child's bitmaps mark come from the child, the rest from the parent.
fn chain_files() -> (Files, Vec<u8>) {
    chain_of(1 << 20)
}

/// The chain of [`chain_files`] with blocks of `block` bytes (three blocks).
fn chain_of(block: u64) -> (Files, Vec<u8>) {
    let size = 3 * block;
    let mut base = Writer::new(size, block, [0xba; 16], None);
    let mut model = vec![0u8; size as usize];
    for (off, len, fill) in [(0u64, block as usize, 0x10u8), (2 * block, 4096, 0x20)] {
        base.write(off, &vec![fill; len]);
        model[off as usize..off as usize + len].fill(fill);
    }
    let parent = Parent {
        uuid: [0xba; 16],
        name: "base.vhd",
        locators: vec![(*b"W2ku", utf16le("C:\\VMs\\disks\\base.vhd")), (*b"W2ru", utf16le(".\\base.vhd"))],
    };
    let mut child = Writer::new(size, block, [0xc1; 16], Some(parent));
    for (off, len, fill) in [(512u64, 1024usize, 0x31u8), (2 * block + 8192, 512, 0x32)] {
        child.write(off, &vec![fill; len]);
        model[off as usize..off as usize + len].fill(fill);
    }
    (Files::new([("child.vhd", child.finish()), ("base.vhd", base.finish())]), model)
}

#[test]
fn a_differencing_chain_reads_child_over_parent() {
    let (files, model) = chain_files();
    let c = files.open("child.vhd").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    assert_eq!(c.top().info().backing.as_ref().unwrap().name, "base.vhd");
    assert!(c.findings.is_empty(), "the parent's UUID matches: {:?}", c.findings);
    assert_eq!(read_all(&c), model);
    let fields = c.top().header_fields();
    let loc = fields.iter().find(|f| f.name == "parent_locator[0] data").unwrap();
    assert_eq!(loc.value, "\"C:\\\\VMs\\\\disks\\\\base.vhd\"");
    assert_eq!(c.top().backing_identity().as_deref(), Some("vhd-uuid:babababa-baba-baba-baba-babababababa"));
    let r = c.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.findings);
}

#[test]
fn a_parent_with_another_uuid_is_reported_and_a_renamed_one_found_by_uuid() {
    let (files, _) = chain_files();
    let child = files.0["child.vhd"].clone();
    let base = files.0["base.vhd"].clone();
    // A different disk under the parent's name.
    let impostor = Writer::new(3 << 20, 1 << 20, [0x99; 16], None).finish();
    let c = Files::new([("child.vhd", child.clone()), ("base.vhd", impostor)]).open("child.vhd").unwrap();
    assert!(c.findings.iter().any(|f| f.code == "parent-identity-mismatch"), "{:?}", c.findings);
    // The parent renamed: no locator resolves, the UUID finds it.
    let c = Folder(Files::new([("child.vhd", child), ("renamed.vhd", base)])).open("child.vhd").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    assert_eq!(c.layers[1].name, "renamed.vhd");
}

#[test]
fn parent_names_come_from_the_best_locator() {
    let name_with = |locators: Vec<([u8; 4], Vec<u8>)>| {
        let w = Writer::new(1 << 20, 1 << 20, [1; 16], Some(Parent { uuid: [2; 16], name: "C:\\old\\unicode-name.vhd", locators }));
        let c = Files::new([("c.vhd", w.finish())]).open("c.vhd").unwrap();
        c.top().info().backing.clone().unwrap().name
    };
    assert_eq!(name_with(vec![(*b"MacX", b"file://localhost/Users/me/base.vhd\0".to_vec())]), "/Users/me/base.vhd");
    assert_eq!(name_with(vec![(*b"W2ku", utf16le("D:\\VMs\\base.vhd")), (*b"Wi2r", b".\\sub\\base.vhd".to_vec())]), "sub/base.vhd");
    assert_eq!(name_with(vec![(*b"W2ku", utf16le("D:\\VMs\\base.vhd"))]), "base.vhd");
    // No locator: the file name of the parent's unicode name.
    assert_eq!(name_with(vec![(*b"Mac ", vec![0; 40])]), "unicode-name.vhd");
}

#[test]
fn damaged_footers_and_blocks_are_reported() {
    let mut w = Writer::new(2 << 20, 1 << 20, [5; 16], None);
    w.write(0, &[1; 512]);
    let mut img = w.finish();
    // The copy at 0 damaged: the end footer is used, and check says so.
    img[at::CURRENT_SIZE] ^= 0xff;
    let c = Files::new([("d.vhd", img.clone())]).open("d.vhd").unwrap();
    assert_eq!(c.top().header_fields().iter().find(|f| f.name == "cookie").unwrap().offset, img.len() as u64 - 512);
    let r = c.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "footer-copy-damaged"), "{:?}", r.findings);
    // A BAT entry past the end of the file: invalid mapping naming the entry.
    img[at::CURRENT_SIZE] ^= 0xff;
    img[1536 + 4..1536 + 8].copy_from_slice(&0x00ff_0000u32.to_be_bytes());
    let c = Files::new([("d.vhd", img)]).open("d.vhd").unwrap();
    let mut buf = vec![0u8; 512];
    let e = c.read(1 << 20, &mut buf).unwrap_err();
    assert!(matches!(e, crate::Error::CorruptMapping { offset: 1540, .. }), "{:?}", e);
    let r = c.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "block-past-end" && f.offset == Some(1540)), "{:?}", r.findings);
}

/// A BAT with more entries than the disk has blocks (max_table_entries is only an upper
/// bound): an allocated entry past the disk is noted, and is not one of the disk's clusters.
#[test]
fn blocks_past_the_disk_are_noted_and_not_counted_as_its_clusters() {
    let mut w = Writer::new(2 << 20, 1 << 20, [5; 16], None);
    w.write(0, &[1; 512]);
    w.write(1 << 20, &[2; 512]);
    let at = w.file.len();
    w.file.resize(at + (w.bitmap + w.block) as usize, 0);
    w.set_entry(2, u32::MAX);
    w.set_entry(3, (at / 512) as u32);
    let h = 512;
    w.file[h + 28..h + 32].copy_from_slice(&4u32.to_be_bytes());
    let c = checksum(&w.file[h..h + 1024], 36);
    w.file[h + 36..h + 40].copy_from_slice(&c.to_be_bytes());
    let r = Files::new([("p.vhd", w.finish())]).open("p.vhd").unwrap().top().check().unwrap();
    let past: Vec<_> = r.findings.iter().filter(|f| f.code == "block-past-disk").map(|f| (f.offset, f.length, f.message.as_str())).collect();
    assert_eq!(past, [(Some(1536 + 12), 4, "1 BAT entry past the end of the disk is allocated (the first is block 3): the disk never reads them, and the space they point at counts as unused")]);
    assert_eq!((r.allocated_clusters, r.total_clusters), (2, 2));
    // Its bitmap and data are space the disk does not use: a leak, as qemu-img counts them.
    let unused: Vec<_> = r.findings.iter().filter(|f| f.code == "unused-space").map(|f| (f.offset, f.length)).collect();
    assert_eq!(unused, [(Some(at as u64), w.bitmap + w.block)]);
    assert_eq!((r.corruptions, r.exit_code()), (0, 3), "{:?}", r.findings);
}

/// A 16 TiB disk of 8 Mi blocks, two of them allocated: a walk crosses the unallocated
/// blocks a run each, in 17 steps; a step of 256 MiB of sectors made it 65,536.
#[test]
fn a_walk_crosses_unallocated_blocks_in_few_steps() {
    let mut w = Writer::new(16 << 40, 2 << 20, [3; 16], None);
    w.write(5 << 20, &[1; 512]);
    w.write(10 << 40, &[2; 512]);
    let chain = Files::new([("big.vhd", w.finish())]).open("big.vhd").unwrap();
    let (steps, runs) = crate::testutil::walk(&chain);
    assert!(steps <= 20, "{} steps", steps);
    let (a, b) = (5u64 << 20, 10u64 << 40);
    assert_eq!(runs, [(0, a, false), (a, 512, true), (a + 512, b - a - 512, false), (b, 512, true), (b + 512, (16 << 40) - b - 512, false)]);
}

#[test]
fn reads_stay_few() {
    // After the two reads of probing: the first 64 KiB and the end footer; then for a
    // dynamic disk one read per allocated block's bitmap (a block apart, too far to join).
    assert!(crate::formats::vdi::tests::reads_to_map("f.vhd", &fixed(&vec![1u8; 4 << 20], [1; 16])) <= 4);
    let mut w = Writer::new(16 << 20, 1 << 20, [2; 16], None);
    for i in [0u64, 5, 6, 15] {
        w.write(i << 20, &[1; 512]);
    }
    let n = crate::formats::vdi::tests::reads_to_map("d.vhd", &w.finish());
    assert!(n <= 4 + 4, "{} reads", n);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..4096, any::<u64>()), 1..8), tail in any::<bool>()) {
        let (files, _) = chain_of(65536);
        let mut f = files.0["child.vhd"].clone();
        let n = f.len();
        for (at, v) in muts {
            let at = if tail { n - 512 + at % 504 } else { at.min(n - 8) };
            f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        let files = Files::new([("child.vhd", f), ("base.vhd", files.0["base.vhd"].clone())]);
        if let Ok(chain) = files.open("child.vhd") {
            let size = chain.virtual_size();
            let mut entries = Vec::new();
            let _ = chain.map(0, size.min(64 << 20), &mut entries);
            let _ = chain.top().check();
            let mut buf = vec![0u8; 4096];
            if size >= 4096 {
                let _ = chain.read(0, &mut buf);
                let _ = chain.read(size - 4096, &mut buf);
            }
            let _ = crate::report::Report::new(&chain);
        }
    }
}
