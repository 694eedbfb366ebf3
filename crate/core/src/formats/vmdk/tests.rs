//! VMDK images written from the spec's tables by the writers in sample.rs (hosted sparse extents
//! laid out as QEMU lays them out, a stream-optimized file with its grain directory in the
//! footer as VMware writes it, an ESX COWD extent, descriptors with every kind of line),
//! read back through the chain against a model, broken on purpose for check, and mutated
//! at random to prove no input makes the reader panic.
use alloc::{format, string::String, vec, vec::Vec};
use proptest::prelude::*;

use super::descriptor::{Descriptor, LineKind};
use crate::chain::Chain;
use crate::map::MapEntry;
use crate::model::{Kind, Severity};
use crate::testutil::Files;


pub(crate) use super::sample::{descriptor, get32, put, vmware_stream, SparseWriter, S};

fn lcg(s: &mut u64) -> u64 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *s >> 33
}

fn read_all(c: &Chain) -> Vec<u8> {
    let mut b = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut b).unwrap();
    b
}

fn entries(c: &Chain) -> Vec<MapEntry> {
    let mut v = Vec::new();
    c.for_each_entry(|e| Ok(v.push(*e))).unwrap();
    v
}

/// Grain contents that compress (a repeated short pattern) or not (noise).
fn grain_bytes(s: &mut u64, n: usize) -> Vec<u8> {
    if lcg(s) % 2 == 0 {
        let p = lcg(s) as u8 | 1;
        (0..n).map(|i| p.wrapping_add((i / 97) as u8)).collect()
    } else {
        (0..n).map(|_| lcg(s) as u8).collect()
    }
}

/// A monolithic sparse image (compressed or not) with random grains; returns it and the
/// disk's bytes.
fn random_sparse(capacity: u64, compressed: bool, zero_grain: bool, seed: u64) -> (SparseWriter, Vec<u8>) {
    let d = descriptor(0x1234_5678, 0xffff_ffff, if compressed { "streamOptimized" } else { "monolithicSparse" }, None, &[format!("RW {} SPARSE \"t.vmdk\"", capacity / S)]);
    let mut w = SparseWriter::new(capacity, 128, compressed, zero_grain, &d);
    let mut model = vec![0u8; capacity as usize];
    let mut s = seed;
    let grains = capacity.div_ceil(w.grain);
    let mut written = vec![false; grains as usize];
    for _ in 0..grains {
        let g = lcg(&mut s) % grains;
        if written[g as usize] && compressed {
            continue; // stream-optimized grains are written once
        }
        let a = (g * w.grain) as usize;
        let b = ((g + 1) * w.grain).min(capacity) as usize;
        if zero_grain && lcg(&mut s) % 4 == 0 {
            w.zero_grain(a as u64);
            model[a..b].fill(0);
        } else {
            let data = grain_bytes(&mut s, b - a);
            w.write_grain(a as u64, &data);
            model[a..b].copy_from_slice(&data);
        }
        written[g as usize] = true;
    }
    (w, model)
}

#[test]
fn monolithic_sparse_reads_as_the_model_and_maps_to_its_grains() {
    for (compressed, zero) in [(false, false), (false, true), (true, false)] {
        // Not a multiple of the grain: the last grain is partial.
        let capacity = 40 * 65536 + 8 * 512;
        let (w, model) = random_sparse(capacity, compressed, zero, 11 + compressed as u64);
        let files = Files::new([("t.vmdk", w.file.clone())]);
        let c = files.open("t.vmdk").unwrap();
        assert_eq!(c.virtual_size(), capacity);
        assert!(read_all(&c) == model, "compressed {} zero {}: guest bytes differ", compressed, zero);
        let mut pos = 0;
        for e in entries(&c) {
            assert_eq!(e.start, pos);
            pos += e.length;
            assert_eq!(e.compressed, compressed && e.data);
            if e.data && !compressed {
                let o = e.offset.unwrap() as usize;
                assert_eq!(&w.file[o..o + e.length as usize], &model[e.start as usize..(e.start + e.length) as usize]);
            }
            if e.present && !e.data {
                assert!(zero, "only zeroed grains read as present zeros");
            }
        }
        assert_eq!(pos, capacity);
        crate::testutil::assert_steps_hold_their_budget("monolithic sparse", &c);
        let r = c.top().check().unwrap();
        assert_eq!(r.exit_code(), 0, "{:?}", r.findings);
        assert!(r.findings.iter().all(|f| f.severity <= Severity::Info), "{:?}", r.findings);
        assert!(r.allocated_clusters > 0);
        let kinds: Vec<_> = c.top().regions().unwrap().iter().map(|r| r.name.clone()).collect();
        for want in ["header", "descriptor", "redundant grain directory", "grain directory", "grain tables"] {
            assert!(kinds.iter().any(|k| k == want), "{} missing from {:?}", want, kinds);
        }
        assert_eq!(c.top().identity().as_deref(), Some("vmdk-cid:12345678"));
        assert_eq!(c.top().backing_identity(), None);
    }
}

#[test]
fn the_zeroed_grain_gte_needs_its_flag() {
    let d = descriptor(1, 0xffff_ffff, "monolithicSparse", None, &[String::from("RW 2048 SPARSE \"t.vmdk\"")]);
    for flag in [true, false] {
        let mut w = SparseWriter::new(1 << 20, 128, false, flag, &d);
        w.write_grain(0, &[7; 65536]);
        w.zero_grain(65536);
        let (gte, _) = w.gte(65536);
        let c = Files::new([("t.vmdk", w.file.clone())]).open("t.vmdk").unwrap();
        let mut ext = Vec::new();
        c.top().map(65536, 65536, &mut ext).unwrap();
        let r = c.top().check().unwrap();
        if flag {
            assert_eq!(ext[0].kind, Kind::Zero);
            assert_eq!(r.exit_code(), 0, "{:?}", r.findings);
        } else {
            // Without the flag a GTE of 1 is sector 1: QEMU reads the descriptor as data.
            assert_eq!(ext[0].kind, Kind::Data { file: 0, offset: 512 });
            assert!(r.findings.iter().any(|f| f.code == "grain-overlaps-metadata" && f.offset == Some(gte)), "{:?}", r.findings);
        }
    }
}

/// Every kind of descriptor line, each shown as a field at its own offset.
#[test]
fn descriptor_lines_are_fields_at_their_offsets() {
    let text = "# Disk DescriptorFile\r\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\nisNativeSnapshot=\"no\"\n\
createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\nRW 2048 FLAT \"d-f001.vmdk\" 0\nRDONLY 1024 FLAT \"d f002.vmdk\" 16\n\
RW 1024 ZERO\nNOACCESS 8 VMFS \"raw.vmdk\"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\nddb.geometry.cylinders = \"4\"\n\
ddb.uuid = \"60 00 C2 9b 69 2f c9 76-74 c4 07 9a 10 00 00 00\"\nsomething odd\n";
    let d = Descriptor::parse(text.as_bytes());
    let fields = d.fields(1000);
    let shown: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).collect();
    assert_eq!(fields.len(), shown.len());
    for (f, line) in fields.iter().zip(&shown) {
        let at = text.find(line).unwrap() as u64;
        assert_eq!(f.offset, 1000 + at, "{}", line);
        assert_eq!(f.value, *line);
        assert_eq!(f.size, line.len() as u64);
        assert_eq!(f.raw, line.as_bytes());
        assert!(!f.note.is_empty());
    }
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names[..8], ["comment", "version", "encoding", "CID", "parentCID", "isNativeSnapshot", "createType", "comment"]);
    assert_eq!(names[8..12], ["extent 1", "extent 2", "extent 3", "extent 4"]);
    assert_eq!(*names.last().unwrap(), "line");
    let xs: Vec<_> = d.extents().map(|(_, x)| x.clone()).collect();
    assert_eq!((xs[0].access.as_str(), xs[0].sectors, xs[0].kind.as_str(), xs[0].name.as_deref(), xs[0].offset), ("RW", Some(2048), "FLAT", Some("d-f001.vmdk"), Some(0)));
    assert_eq!((xs[1].access.as_str(), xs[1].name.as_deref(), xs[1].offset), ("RDONLY", Some("d f002.vmdk"), Some(16)));
    assert_eq!(xs[1].name_at, text.find("d f002").unwrap() as u64);
    assert_eq!((xs[2].kind.as_str(), xs[2].name.as_deref()), ("ZERO", None));
    assert_eq!((xs[3].access.as_str(), xs[3].kind.as_str(), xs[3].offset), ("NOACCESS", "VMFS", None));
    let (v, _, at) = d.get("ddb.adapterType").unwrap();
    assert_eq!((v, at), ("lsilogic", text.find("lsilogic").unwrap() as u64));
    assert!(fields.iter().any(|f| f.name == "ddb.uuid" && f.note.contains("UUID")));
    assert!(fields.iter().any(|f| f.name == "createType" && f.note.contains("flat extent files")));
    assert_eq!(d.problems.len(), 1, "{:?}", d.problems); // "something odd"
    assert_eq!(d.problems[0].code, "descriptor-line-unknown");
}

#[test]
fn odd_descriptor_text_is_reported_not_fatal() {
    let text = b"version=1\nCID=12\xff34\ncreateType=\"monolithicFlat\nRW 99999999999999999999999 FLAT \"x.raw\" 0\nRW 8 FLAT \"unterminated 0\nRW 8 FLAT noquotes 0\nRW 8 FLAT \"a\" 0x10\nRW 8\n";
    let d = Descriptor::parse(text);
    let codes: Vec<_> = d.problems.iter().map(|p| (p.code, p.offset)).collect();
    assert!(codes.contains(&("descriptor-not-utf8", 16)), "{:?}", codes);
    assert!(codes.iter().filter(|c| c.0 == "extent-line-invalid").count() >= 5, "{:?}", codes);
    assert!(d.problems.iter().any(|p| p.message.contains("no closing quote")));
    let xs: Vec<_> = d.extents().map(|(_, x)| x.clone()).collect();
    assert_eq!(xs.len(), 5);
    assert_eq!(xs[0].sectors, None);
    assert!(xs[3].bad_offset);
    // Opening it: a missing file, broken lines; never a panic.
    let c = Files::new([("d.vmdk", text.to_vec())]).open("d.vmdk").unwrap();
    let r = c.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "cid-invalid"), "{:?}", r.findings);
    assert!(r.findings.iter().any(|f| f.code == "extent-file-missing"), "{:?}", r.findings);
}

#[test]
fn probe_knows_descriptors_and_sparse_headers_but_not_other_text() {
    let p = |b: &[u8]| (super::DRIVER.probe)(b, &crate::io::MemFile(Vec::new()));
    assert!(p(b"# Disk DescriptorFile\nversion=1\n"));
    assert!(p(b"# any comment\n   \nversion=2\r\nCID=1\n"));
    assert!(p(b"\n\nversion = 1\nsomething\ncreateType = \"vmfs\"\n"));
    assert!(p(b"KDMV\x01\0\0\0"));
    assert!(p(b"COWD\x01\0\0\0"));
    assert!(!p(b"These are notes, not a disk image.\n"));
    assert!(!p(b"version: 1\ncreateType: x\n"));
    assert!(!p(b"version=1"), "QEMU wants the line ended");
}

/// A hand-made descriptor with a ZERO extent between two flat extents of one file: the
/// ZERO extent reads as zeros and the flat extents read their offsets.
#[test]
fn a_zero_extent_reads_as_zeros_between_flat_extents() {
    let flat: Vec<u8> = (0..2 << 20).map(|i: u32| (i % 251) as u8 + 1).collect();
    let d = descriptor(0xabc, 0xffff_ffff, "monolithicFlat", None, &[
        String::from("RW 2048 FLAT \"a.raw\" 0"),
        String::from("RW 4096 ZERO"),
        String::from("RW 2048 FLAT \"a.raw\" 2048"),
    ]);
    let files = Files::new([("z.vmdk", d.clone().into_bytes()), ("a.raw", flat.clone())]);
    let c = files.open("z.vmdk").unwrap();
    assert_eq!(c.virtual_size(), 4 << 20);
    let mut want = vec![0u8; 4 << 20];
    want[..1 << 20].copy_from_slice(&flat[..1 << 20]);
    want[3 << 20..].copy_from_slice(&flat[1 << 20..]);
    assert!(read_all(&c) == want);
    let mut ext = Vec::new();
    c.top().map(0, 4 << 20, &mut ext).unwrap();
    let kinds: Vec<_> = ext.iter().map(|e| (e.start, e.length, e.kind)).collect();
    assert_eq!(kinds, vec![
        (0, 1 << 20, Kind::Data { file: 1, offset: 0 }),
        (1 << 20, 2 << 20, Kind::Zero),
        (3 << 20, 1 << 20, Kind::Data { file: 1, offset: 1 << 20 }),
    ]);
    crate::testutil::assert_steps_hold_their_budget("flat, zero, flat", &c);
    let info = c.top().info();
    assert_eq!(info.companions.len(), 1, "one file named twice is one companion");
    assert_eq!(info.companions[0].offset, d.find("a.raw").unwrap() as u64);
    let r = c.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "extent-zero" && f.message.contains("QEMU skips")), "{:?}", r.findings);
    assert_eq!(r.exit_code(), 0);
    // The plan copies the flat file directly.
    let mut parts = Vec::new();
    c.plan(|p| Ok(parts.push(p))).unwrap();
    use crate::convert::Part;
    assert_eq!(parts, vec![
        Part::File { layer: 0, file: 1, offset: 0, length: 1 << 20 },
        Part::Zero { length: 2 << 20 },
        Part::File { layer: 0, file: 1, offset: 1 << 20, length: 1 << 20 },
    ]);
}

/// A 256 GiB monolithicSparse disk as qemu-img makes it: every grain table allocated, and
/// all but two of them host holes in a sparse file. A walk crosses the holes' tables as one
/// run each and reads none of them (32 MiB of zeros); so does check.
#[test]
fn grain_tables_in_host_holes_are_one_run_and_not_read() {
    use crate::io::SparseFile;
    use crate::testutil::Counted;
    use alloc::sync::Arc;
    use core::cell::Cell;
    let capacity = 256u64 << 30;
    let d = descriptor(7, 0xffff_ffff, "monolithicSparse", None, &[format!("RW {} SPARSE \"big.vmdk\"", capacity / S)]);
    let mut w = SparseWriter::new(capacity, 128, false, false, &d);
    let tables = w.gd - w.rgd;
    w.write_grain(3 << 20, &[5; 65536]);
    w.write_grain(200 << 30, &[6; 65536]);
    let file = Arc::new(Counted(SparseFile::decode(&SparseFile::encode(&w.file)).unwrap(), Cell::new(0)));
    let c = Chain::open("big.vmdk", file.clone(), None, &Files::default()).unwrap();
    file.1.set(0);
    let (steps, runs) = crate::testutil::walk(&c);
    assert_eq!(steps, 1, "8,192 tables, all but two one run each, fit one step of {} runs", crate::limits::MAP_WINDOW_RUNS);
    assert_eq!(runs, vec![
        (0, 3 << 20, false),
        (3 << 20, 65536, true),
        ((3 << 20) + 65536, (200 << 30) - (3 << 20) - 65536, false),
        (200 << 30, 65536, true),
        ((200 << 30) + 65536, capacity - (200 << 30) - 65536, false),
    ]);
    assert!(file.1.get() < tables / 16, "the walk read {} bytes; the tables are {}", file.1.get(), tables);
    file.1.set(0);
    let r = c.top().check().unwrap();
    assert_eq!((r.exit_code(), r.allocated_clusters), (0, 2), "{:?}", r.findings);
    assert!(file.1.get() < tables / 16, "check read {} bytes; the tables are {}", file.1.get(), tables);
}

/// twoGbMaxExtentSparse in miniature: a descriptor over two sparse extent files; when one
/// is missing, its range is named and the rest still reads.
#[test]
fn split_sparse_extents_and_a_missing_one() {
    let cap = 1 << 20;
    let inner = descriptor(0, 0, "x", None, &[]);
    let mut a = SparseWriter::new(cap, 128, false, false, &inner);
    let mut b = SparseWriter::new(cap, 128, false, false, &inner);
    a.write_grain(65536, &[1; 65536]);
    b.write_grain(0, &[2; 4096]);
    let d = descriptor(5, 0xffff_ffff, "twoGbMaxExtentSparse", None, &[String::from("RW 2048 SPARSE \"t-s001.vmdk\""), String::from("RW 2048 SPARSE \"t-s002.vmdk\"")]);
    let mut files = Files::new([("t.vmdk", d.clone().into_bytes()), ("t-s001.vmdk", a.file.clone()), ("t-s002.vmdk", b.file.clone())]);
    let c = files.open("t.vmdk").unwrap();
    assert_eq!(c.virtual_size(), 2 << 20);
    let got = read_all(&c);
    assert!(got[65536..131072].iter().all(|&x| x == 1));
    assert!(got[1 << 20..(1 << 20) + 4096].iter().all(|&x| x == 2));
    assert!(got[(1 << 20) + 4096..].iter().all(|&x| x == 0));
    let e = entries(&c);
    assert!(e.iter().any(|e| e.start == 1 << 20 && e.data && e.file == 2 && e.offset == Some(b.file.len() as u64 - 65536)));
    crate::testutil::assert_steps_hold_their_budget("two sparse extents", &c);
    let fields = c.top().header_fields();
    assert!(fields.iter().any(|f| f.name == "t-s002.vmdk: capacity"));
    let r = c.top().check().unwrap();
    assert_eq!(r.exit_code(), 0);
    assert!(r.findings.iter().all(|f| f.severity == Severity::Info), "{:?}", r.findings);

    // A line that disagrees with its file's header: the header wins, and check says so.
    let d2 = d.replace("RW 2048 SPARSE \"t-s001.vmdk\"", "RW 1024 SPARSE \"t-s001.vmdk\"");
    let f2 = Files::new([("t.vmdk", d2.clone().into_bytes()), ("t-s001.vmdk", a.file.clone()), ("t-s002.vmdk", b.file.clone())]);
    let c2 = f2.open("t.vmdk").unwrap();
    assert_eq!(c2.virtual_size(), 2 << 20);
    let r = c2.top().check().unwrap();
    let f = r.findings.iter().find(|f| f.code == "extent-size-mismatch").expect("a size mismatch");
    assert_eq!(f.offset, Some(d2.find("RW 1024").unwrap() as u64));

    files.0.remove("t-s002.vmdk");
    let c = files.open("t.vmdk").unwrap();
    let comp = &c.top().info().companions[1];
    assert_eq!((comp.role, comp.name.as_str(), comp.found.as_deref()), ("extent file", "t-s002.vmdk", None));
    assert_eq!(comp.offset, d.find("t-s002").unwrap() as u64);
    // The missing extent keeps its place from the descriptor's size.
    assert_eq!(c.virtual_size(), 2 << 20);
    let e = entries(&c);
    assert!(e.iter().any(|e| e.start == 1 << 20 && e.missing && e.present));
    crate::testutil::assert_steps_hold_their_budget("a sparse extent and a missing one", &c);
    let err = c.read(1 << 20, &mut [0u8; 512]).unwrap_err();
    assert!(matches!(&err, crate::Error::MissingFile { name, .. } if name == "t-s002.vmdk"), "{:?}", err);
    assert!(format!("{}", err).contains("t-s002.vmdk"));
    let mut first = [0u8; 512];
    c.read(65536, &mut first).unwrap();
    assert_eq!(first, [1; 512]);
    let r = c.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "extent-file-missing" && f.message.contains("'t-s002.vmdk'")), "{:?}", r.findings);
}

/// A child names its parent by file name and by the parent's CID; unallocated grains read
/// the parent, zeroed grains do not. A parent with another CID is reported by the chain.
#[test]
fn parent_cid_chain() {
    let cap = 1 << 20;
    let bd = descriptor(0x1111_aaaa, 0xffff_ffff, "monolithicSparse", None, &[String::from("RW 2048 SPARSE \"base.vmdk\"")]);
    let mut base = SparseWriter::new(cap, 128, false, false, &bd);
    for g in 0..16 {
        base.write_grain(g * 65536, &[0x40 + g as u8; 65536]);
    }
    let child = |parent_cid: u32| {
        let cd = descriptor(0x2222_bbbb, parent_cid, "monolithicSparse", Some("base.vmdk"), &[String::from("RW 2048 SPARSE \"child.vmdk\"")]);
        let mut w = SparseWriter::new(cap, 128, false, true, &cd);
        w.write_grain(65536, &[9; 65536]);
        w.zero_grain(2 * 65536);
        w.file
    };
    let files = Files::new([("base.vmdk", base.file.clone()), ("child.vmdk", child(0x1111_aaaa))]);
    let c = files.open("child.vmdk").unwrap();
    assert_eq!(c.layers.len(), 2);
    assert!(c.findings.is_empty(), "{:?}", c.findings);
    let b = c.top().info().backing.clone().unwrap();
    assert_eq!((b.name.as_str(), b.format.as_deref()), ("base.vmdk", Some("vmdk")));
    assert_eq!(c.top().backing_identity().as_deref(), Some("vmdk-cid:1111aaaa"));
    assert_eq!(c.layers[1].image.identity().as_deref(), Some("vmdk-cid:1111aaaa"));
    let got = read_all(&c);
    assert!(got[..65536].iter().all(|&x| x == 0x40));
    assert!(got[65536..131072].iter().all(|&x| x == 9));
    assert!(got[131072..196608].iter().all(|&x| x == 0), "a zeroed grain hides the parent");
    assert!(got[196608..262144].iter().all(|&x| x == 0x43));
    let e = entries(&c);
    assert!(e.iter().any(|e| e.depth == 1 && e.data));

    let files = Files::new([("base.vmdk", base.file.clone()), ("child.vmdk", child(0x0bad_0bad))]);
    let c = files.open("child.vmdk").unwrap();
    let f = c.findings.iter().find(|f| f.code == "parent-identity-mismatch").expect("a mismatch finding");
    assert!(f.message.contains("vmdk-cid:0bad0bad") && f.message.contains("vmdk-cid:1111aaaa"), "{}", f.message);
}

#[test]
fn vmware_stream_optimized_with_footer_and_markers() {
    let cap = 3 * 65536 * 512 + 65536 * 3; // four grain tables' worth, partly
    let mut s = 5u64;
    let grains: Vec<(u64, Vec<u8>)> = [0u64, 1, 7, 511, 512, 1023, 1536]
        .iter()
        .map(|&g| (g * 65536, grain_bytes(&mut s, (cap - g * 65536).min(65536) as usize)))
        .collect();
    let d = descriptor(0x77, 0xffff_ffff, "streamOptimized", None, &[format!("RW {} SPARSE \"s.vmdk\"", cap / S)]);
    let (f, at) = vmware_stream(cap, &grains, &d);
    let files = Files::new([("s.vmdk", f.clone())]);
    let c = files.open("s.vmdk").unwrap();
    let mut want = vec![0u8; cap as usize];
    for (g, b) in &grains {
        want[*g as usize..*g as usize + b.len()].copy_from_slice(b);
    }
    assert!(read_all(&c) == want);
    let r = c.top().check().unwrap();
    assert_eq!(r.exit_code(), 0, "{:?}", r.findings);
    let recs = c.top().records();
    let kinds: Vec<&str> = recs.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "grain table marker").count(), 4, "{:?}", kinds);
    assert!(kinds.contains(&"grain directory marker") && kinds.contains(&"footer marker") && kinds.contains(&"end-of-stream marker"), "{:?}", kinds);
    let fields = c.top().header_fields();
    let foot = fields.iter().find(|f| f.name == "footer gdOffset").expect("footer fields");
    assert_eq!(foot.offset, f.len() as u64 - 1024 + 56);
    assert!(c.top().info().variant.contains("footer"));

    // Break one grain's compressed bytes: reading it fails and check names its GTE.
    let mut bad = f.clone();
    for b in &mut bad[at[2] as usize + 12..at[2] as usize + 40] {
        *b ^= 0x5a;
    }
    let c = Files::new([("s.vmdk", bad)]).open("s.vmdk").unwrap();
    let err = c.read(7 * 65536, &mut [0u8; 512]).unwrap_err();
    assert!(format!("{}", err).contains(&format!("byte {}", at[2])), "{}", err);
    let r = c.top().check().unwrap();
    let fd = r.findings.iter().find(|f| f.code == "grain-undecodable").expect("an undecodable grain");
    assert_eq!(fd.guest, Some(7 * 65536));
    assert!(fd.message.contains(&format!("at {}", at[2])));
    assert_eq!(r.exit_code(), 2);

    // A broken footer is refused with its offset.
    let mut bad = f.clone();
    let n = bad.len();
    bad[n - 1536 + 12] = 9;
    let e = Files::new([("s.vmdk", bad)]).open("s.vmdk").err().unwrap();
    assert!(matches!(e, crate::Error::Invalid { offset, .. } if offset == n as u64 - 1536), "{:?}", e);
}

#[test]
fn check_finds_what_was_broken_on_purpose() {
    let d = descriptor(3, 0xffff_ffff, "monolithicSparse", None, &[String::from("RW 4096 SPARSE \"t.vmdk\"")]);
    let mut w = SparseWriter::new(2 << 20, 128, false, false, &d);
    for g in 0..6 {
        w.write_grain(g * 65536, &[g as u8 + 1; 65536]);
    }
    let (g0, _) = w.gte(0);
    let (g1, r1) = w.gte(65536);
    let (g2, r2) = w.gte(2 * 65536);
    let (g3, _) = w.gte(3 * 65536);
    let first = get32(&w.file, g0);
    put(&mut w.file, g1, &first.to_le_bytes()); // two entries share a grain
    put(&mut w.file, r1, &first.to_le_bytes());
    put(&mut w.file, g2, &0x00ff_ffffu32.to_le_bytes()); // past the end, in the table only
    put(&mut w.file, r2, &0x00ff_ffffu32.to_le_bytes());
    put(&mut w.file, g3, &7u32.to_le_bytes()); // into the redundant directory; the copy differs
    put(&mut w.file, 73, b"\r\n\r\n");
    let c = Files::new([("t.vmdk", w.file.clone())]).open("t.vmdk").unwrap();
    let r = c.top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().map(|f| (f.code, f.offset)).collect();
    assert!(codes.contains(&("grain-shared", Some(g1))), "{:?}", codes);
    assert!(codes.contains(&("grain-past-end", Some(g2))), "{:?}", codes);
    assert!(codes.contains(&("grain-overlaps-metadata", Some(g3))), "{:?}", codes);
    assert!(codes.iter().any(|c| c.0 == "redundant-table-differs"), "{:?}", codes);
    assert!(codes.contains(&("newline-bytes", Some(73))), "{:?}", codes);
    assert_eq!(r.exit_code(), 2);
    // The map marks the entry past the end invalid, and reading there names it.
    let mut ext = Vec::new();
    c.top().map(2 * 65536, 65536, &mut ext).unwrap();
    assert_eq!(ext[0].kind, Kind::Invalid { entry: g2 });
    let err = c.read(2 * 65536, &mut [0u8; 512]).unwrap_err();
    assert!(matches!(err, crate::Error::CorruptMapping { offset, .. } if offset == g2), "{:?}", err);

    // A directory entry pointing past the end: its whole table's range is invalid.
    let mut f = w.file.clone();
    put(&mut f, w.gd, &0x0fff_ffffu32.to_le_bytes());
    let c = Files::new([("t.vmdk", f)]).open("t.vmdk").unwrap();
    let mut ext = Vec::new();
    c.top().map(0, 2 << 20, &mut ext).unwrap();
    assert_eq!(ext[0].kind, Kind::Invalid { entry: w.gd });
    assert_eq!(ext[0].length, 2 << 20);
    let r = c.top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "grain-directory-entry-invalid" && f.offset == Some(w.gd)));
}

#[test]
fn bad_sparse_headers_are_refused_with_the_field_offset() {
    let d = descriptor(3, 0xffff_ffff, "monolithicSparse", None, &[]);
    let w = SparseWriter::new(1 << 20, 128, false, false, &d);
    for (at, val, width, off) in [(4u64, 4u64, 4, 4u64), (44, 513, 4, 44), (20, 0, 8, 20), (20, 0x40_0000, 8, 20), (12, 1 << 60, 8, 12)] {
        let mut f = w.file.clone();
        put(&mut f, at, &val.to_le_bytes()[..width]);
        match Files::new([("t.vmdk", f)]).open("t.vmdk") {
            Err(crate::Error::Invalid { offset, .. }) | Err(crate::Error::Unsupported { offset, .. }) => assert_eq!(offset, off),
            other => panic!("field at {}: expected a refusal, got {:?}", at, other.map(|_| ())),
        }
    }
}

/// An ESX sparse (COWD) extent named by a VMFSSPARSE line.
#[test]
fn cowd_extent_through_a_descriptor() {
    let grain = 8 * 512u64;
    let sectors = 4096 * 8 * 2; // two grain tables
    let mut f = vec![0u8; 2048];
    put(&mut f, 0, b"COWD");
    put(&mut f, 4, &1u32.to_le_bytes());
    put(&mut f, 12, &(sectors as u32).to_le_bytes());
    put(&mut f, 16, &8u32.to_le_bytes());
    put(&mut f, 20, &4u32.to_le_bytes()); // GD at sector 4
    put(&mut f, 24, &2u32.to_le_bytes());
    f.resize(4096, 0);
    put(&mut f, 2048, &8u32.to_le_bytes()); // GT 0 at sector 8
    f.resize(4096 + 4096 * 4 * 2, 0);
    let data_at = f.len() as u64;
    f.extend(vec![0x5e; grain as usize]);
    put(&mut f, 4096 + 3 * 4, &((data_at / 512) as u32).to_le_bytes()); // grain 3
    let d = descriptor(1, 0xffff_ffff, "vmfsSparse", None, &[format!("RW {} VMFSSPARSE \"d-delta.vmdk\"", sectors)]);
    let c = Files::new([("d.vmdk", d.into_bytes()), ("d-delta.vmdk", f)]).open("d.vmdk").unwrap();
    assert_eq!(c.virtual_size(), sectors * 512);
    let got = read_all(&c);
    assert!(got[3 * grain as usize..4 * grain as usize].iter().all(|&x| x == 0x5e));
    assert_eq!(got.iter().filter(|&&x| x != 0).count(), grain as usize);
    assert!(c.top().header_fields().iter().any(|f| f.name == "d-delta.vmdk: numGDEntries"));
    assert_eq!(c.top().check().unwrap().exit_code(), 0);
}

#[test]
fn a_text_descriptor_bounded_and_refused_when_empty() {
    let c = Files::new([("x.vmdk", b"version=1\n\n".to_vec())]).open("x.vmdk");
    assert!(matches!(c, Err(crate::Error::Invalid { .. })), "{:?}", c.map(|_| ()));
    let mut many = descriptor(1, 0xffff_ffff, "monolithicFlat", None, &[]);
    for _ in 0..super::MAX_EXTENTS + 1 {
        many.push_str("RW 1 ZERO\n");
    }
    let c = Files::new([("x.vmdk", many.into_bytes())]).open("x.vmdk");
    assert!(matches!(c, Err(crate::Error::Limit { .. })), "{:?}", c.map(|_| ()));
}

fn exercise(files: &Files, top: &str) {
    if let Ok(chain) = files.open(top) {
        let size = chain.virtual_size();
        let mut v = Vec::new();
        let _ = chain.map(0, size.min(64 << 20), &mut v);
        let _ = chain.top().check();
        let _ = chain.top().regions();
        let _ = chain.top().records();
        let _ = chain.top().header_fields();
        let mut buf = vec![0u8; 65536 + 512];
        let n = (buf.len() as u64).min(size) as usize;
        let _ = chain.read(0, &mut buf[..n]);
        let _ = chain.read(size - n as u64, &mut buf[..n]);
        let _ = chain.read(size / 2 - (size / 2).min(n as u64 / 2), &mut buf[..n.min(size as usize)]);
        let _ = crate::report::Report::new(&chain);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    /// Any bytes written anywhere in a sparse image (plain or compressed, QEMU's layout or
    /// VMware's footer layout): open, map, check and read answer, never panic.
    #[test]
    fn mutated_sparse_images_never_panic(muts in prop::collection::vec((0usize..200_000, any::<u64>(), 1usize..9), 1..10), kind in 0u8..3) {
        let mut f = match kind {
            0 | 1 => random_sparse(6 * 65536 + 1024, kind == 1, true, 3).0.file,
            _ => vmware_stream(2 * 65536, &[(0, vec![1; 65536]), (65536, vec![2; 65536])], &descriptor(1, 0xffff_ffff, "streamOptimized", None, &[])).0,
        };
        for (at, v, w) in muts {
            let at = at % (f.len() - 8);
            f[at..at + w.min(8)].copy_from_slice(&v.to_le_bytes()[..w.min(8)]);
        }
        exercise(&Files::new([("t.vmdk", f)]), "t.vmdk");
    }

    /// Any text in a descriptor that names flat, zero and sparse extents and a parent.
    #[test]
    fn mutated_descriptors_never_panic(muts in prop::collection::vec((0usize..600, any::<u8>()), 1..12), cut in 0usize..700) {
        let inner = descriptor(9, 0xffff_ffff, "monolithicSparse", None, &[]);
        let mut sp = SparseWriter::new(1 << 20, 128, false, false, &inner);
        sp.write_grain(0, &[3; 65536]);
        let d = descriptor(1, 9, "twoGbMaxExtentSparse", Some("p.vmdk"), &[
            String::from("RW 2048 SPARSE \"s1.vmdk\""), String::from("RW 100 ZERO"), String::from("RW 300 FLAT \"f.raw\" 12"),
        ]);
        let mut t = d.into_bytes();
        for (at, b) in muts {
            let at = at % t.len();
            t[at] = b;
        }
        t.truncate(cut.max(1));
        let files = Files::new([("d.vmdk", t), ("s1.vmdk", sp.file.clone()), ("f.raw", vec![7; 100_000]), ("p.vmdk", sp.file)]);
        exercise(&files, "d.vmdk");
    }
}

#[test]
fn descriptor_kinds_cover_the_line_types() {
    let d = Descriptor::parse(b"# c\n\nk=v\nRW 1 ZERO\n???\n");
    let k: Vec<_> = d.lines.iter().map(|l| core::mem::discriminant(&l.kind)).collect();
    assert_eq!(k.len(), 5);
    assert!(matches!(d.lines[2].kind, LineKind::Pair { .. }));
    assert!(matches!(d.lines[3].kind, LineKind::Extent(_)));
    assert!(matches!(d.lines[4].kind, LineKind::Other));
}

/// Counts the reads that reach the file (the browser pays about 1.5 ms for each).
struct Counting(crate::io::MemFile, core::cell::Cell<usize>);

impl crate::io::ReadAt for Counting {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::error::Result<()> {
        self.1.set(self.1.get() + 1);
        self.0.read_at(offset, buf)
    }
}

/// Grain tables come in few large reads, and compressed grains are read ahead in large
/// spans, never one read per grain.
#[test]
fn tables_and_compressed_grains_are_read_in_few_large_reads() {
    use alloc::sync::Arc;
    // 256 MiB: 128 grain tables; grains scattered over the disk.
    let cap = 256 << 20;
    let d = descriptor(1, 0xffff_ffff, "monolithicSparse", None, &[]);
    let mut w = SparseWriter::new(cap, 128, false, false, &d);
    for g in (0..cap / 65536).step_by(37) {
        w.write_grain(g * 65536, &[g as u8 | 1; 512]);
    }
    let f = Arc::new(Counting(crate::io::MemFile(w.file.clone()), core::cell::Cell::new(0)));
    let c = Chain::open("t.vmdk", f.clone(), None, &Files::default()).unwrap();
    let opened = f.1.get();
    let n = entries(&c).len();
    assert!(n > 100);
    let mapped = f.1.get() - opened;
    assert!(mapped <= 3, "mapping 128 grain tables took {} reads", mapped);
    let before = f.1.get();
    c.top().check().unwrap();
    assert!(f.1.get() - before <= 4, "check took {} reads", f.1.get() - before);

    // 16 MiB of compressed grains (256 of them), read whole as convert reads them.
    let (w, model) = random_sparse(16 << 20, true, false, 21);
    let f = Arc::new(Counting(crate::io::MemFile(w.file.clone()), core::cell::Cell::new(0)));
    let c = Chain::open("s.vmdk", f.clone(), None, &Files::default()).unwrap();
    let before = f.1.get();
    let mut got = vec![0u8; 16 << 20];
    for (i, chunk) in got.chunks_mut(4 << 20).enumerate() {
        c.read(i as u64 * (4 << 20), chunk).unwrap();
    }
    assert!(got == model);
    let reads = f.1.get() - before;
    let spans = w.file.len().div_ceil(8 << 20);
    assert!(reads <= 2 * spans + 4, "{} reads for {} bytes of compressed grains", reads, w.file.len());
    let before = f.1.get();
    assert_eq!(c.top().check().unwrap().exit_code(), 0);
    assert!(f.1.get() - before <= 2 * spans + 4, "check took {} reads", f.1.get() - before);
}

#[test]
fn a_descriptor_of_many_lines_is_bounded() {
    let d = Descriptor::parse(&vec![b'\n'; 1 << 20]);
    assert_eq!(d.lines.len(), super::descriptor::MAX_LINES);
    assert_eq!(d.problems.last().map(|p| p.code), Some("descriptor-lines"));
}
