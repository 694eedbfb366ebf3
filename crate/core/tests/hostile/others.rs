//! Every format's sample (diskscope_core::samples, the page's demos) cut at every field and
//! region boundary; QED's tables, sizes and chains; cow names and bitmaps; garbage journals.
use diskscope_core::samples::{self, Sample};
use diskscope_core::Error;

use crate::gen::{le32, le64, put};
use crate::{codes, Files};

fn files_of(s: &Sample) -> Files {
    let mut f = Files::default();
    for (n, b) in &s.files {
        f = f.with(n, b.clone());
    }
    f
}

fn sample(name: &str) -> (Files, String) {
    let s = (samples::find(name).unwrap().build)();
    (files_of(&s), String::from(s.top()))
}

fn lcg(s: &mut u64) -> u8 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*s >> 33) as u8
}

/// Offsets where a cut changes what is there: every header field's start and end, every
/// region's start and end, and the first bytes.
fn cut_points(files: &Files, top: &str) -> Vec<u64> {
    let c = files.open(top).unwrap();
    let size = files.0[top].len() as u64;
    let mut cuts: Vec<u64> = vec![0, 1, 4, 8];
    for f in c.top().header_fields() {
        cuts.extend([f.offset, f.offset + f.size, f.offset + f.size.saturating_sub(1)]);
    }
    for r in c.top().regions().unwrap() {
        cuts.extend([r.offset, r.offset + 1, r.offset + r.length.saturating_sub(1), r.offset + r.length]);
    }
    cuts.retain(|&n| n < size);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Every format's sample, its top file cut at every interesting offset, its companions
/// whole: opening answers with an image or an error that names a structure the cut
/// removed (PastEnd: past the new end, with the new file size) or a header field (an
/// offset inside what is left); never anything about bytes that are not there.
#[test]
fn every_format_truncated_at_every_field_and_region_boundary() {
    let mut total = 0;
    for demo in samples::all() {
        let (files, top) = sample(demo.name);
        for cut in cut_points(&files, &top) {
            let mut f = files.0[&top].clone();
            f.truncate(cut as usize);
            let at = format!("{} cut at {}", demo.name, cut);
            match files.clone().with(&top, f).open(&top) {
                Ok(_) => {}
                Err(Error::PastEnd { offset, len, file_size, what }) => {
                    assert_eq!(file_size, cut, "{}: {}", at, what);
                    assert!(offset.saturating_add(len) > cut, "{}: {} at {} ({} bytes) is inside the file", at, what, offset, len);
                }
                Err(Error::Invalid { offset, .. } | Error::Unsupported { offset, .. }) => {
                    assert!(offset < cut, "{}: names byte {} of a {}-byte file", at, offset, cut);
                }
                Err(Error::UnknownFormat { head }) => assert_eq!(head.len() as u64, 2 * cut.min(16), "{}", at),
                Err(e) => panic!("{}: {:?}", at, e),
            }
            total += 1;
        }
    }
    assert!(total > 500, "only {} cuts", total);
}

/// The bytes of the disk, read through the chain.
fn disk(files: &Files, top: &str) -> Vec<u8> {
    let c = files.open(top).unwrap();
    let mut b = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut b).unwrap();
    b
}

fn garbage(n: usize) -> Vec<u8> {
    let mut seed = 1;
    (0..n).map(|_| lcg(&mut seed)).collect()
}

#[test]
fn journals_full_of_garbage_are_reported_record_by_record_and_not_applied() {
    // FVD: a dirty image whose 64 KiB journal is garbage: every 512-byte record is named
    // malformed at its offset, and the disk reads as it did without a journal.
    let (clean, top) = sample("fvd");
    let mut files = clean.clone();
    let f = files.0.get_mut(&top).unwrap();
    let at = f.len() as u64;
    put(f, at, &garbage(65536));
    le64(f, 2144, at); // journal_offset
    le64(f, 2152, 65536); // journal_size
    le32(f, 2160, 0); // clean_shutdown: no
    let c = files.open(&top).unwrap();
    let r = c.top().check().unwrap();
    let malformed: Vec<u64> = r.findings.iter().filter(|f| f.code == "journal-record-malformed").map(|f| f.offset.unwrap()).collect();
    assert_eq!(malformed, (0..128).map(|k| at + 512 * k).collect::<Vec<_>>());
    assert!(codes(&r).contains(&("not-shut-down-cleanly", Some(2160))));
    assert_eq!(c.top().records().len(), 128);
    assert!(disk(&files, &top) == disk(&clean, &top), "a garbage journal changed the disk");

    // VHDX: the current header names a log (log_guid set, checksum right) that is garbage:
    // nothing is replayed, the log is reported dirty at the log_guid field.
    let (clean, top) = sample("vhdx");
    let mut files = clean.clone();
    let f = files.0.get_mut(&top).unwrap();
    put(f, 1 << 20, &garbage(1 << 20));
    const HEADER2: usize = 131072;
    put(f, HEADER2 as u64 + 48, &[0x42; 16]); // log_guid
    le32(f, HEADER2 as u64 + 4, 0);
    let sum = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&f[HEADER2..HEADER2 + 4096]);
    le32(f, HEADER2 as u64 + 4, sum);
    let c = files.open(&top).unwrap();
    assert_eq!(codes(&c.top().check().unwrap())[0], ("log-dirty", Some(HEADER2 as u64 + 48)));
    assert!(c.top().info().variant.ends_with("log not replayed"), "{}", c.top().info().variant);
    assert!(c.top().records().is_empty());
    assert!(disk(&files, &top) == disk(&clean, &top), "a garbage log changed the disk");
}

#[test]
fn qed_hostile_headers_tables_and_chains() {
    use crate::gen::Qed;
    let q = Qed::new(1 << 30);
    let open = |f: Vec<u8>| Files::one("a", f).open("a");
    // Cluster sizes of 0 and 2^31, table sizes of 0 and 2^31: refused at their field.
    for (at, v) in [(4u64, 0u32), (4, 1 << 31), (8, 0), (8, 1 << 31)] {
        let mut f = q.file.clone();
        le32(&mut f, at, v);
        assert!(matches!(open(f), Err(Error::Invalid { format: "qed", offset, .. }) if offset == at), "field {} = {}", at, v);
    }
    // Sizes near 2^64: more than the tables can map.
    for size in [u64::MAX, u64::MAX - 65535] {
        let mut f = q.file.clone();
        le64(&mut f, 48, size);
        assert!(matches!(open(f), Err(Error::Invalid { format: "qed", offset: 48, .. })), "size {}", size);
    }
    // The L1 entry names the L1 table itself as an L2 table.
    let mut f = q.file.clone();
    le64(&mut f, Qed::L1, Qed::L1);
    let r = open(f).unwrap().top().check().unwrap();
    assert_eq!(codes(&r), [("l2-table-shared", Some(Qed::L1)), ("leaked-clusters", Some(Qed::L2))]);
    // An L2 entry 1 TiB past the end: invalid in the map, named by the check.
    let mut f = q.file.clone();
    le64(&mut f, Qed::L2, 1 << 40);
    let c = open(f).unwrap();
    let mut e = Vec::new();
    c.map(0, 65536, &mut e).unwrap();
    assert_eq!(e[0].invalid, Some(Qed::L2));
    assert_eq!(codes(&c.top().check().unwrap()), [("l2-entry-invalid", Some(Qed::L2)), ("leaked-clusters", Some(Qed::DATA))]);
    // Two L2 entries sharing a data cluster.
    let mut f = q.file.clone();
    le64(&mut f, Qed::L2 + 8, Qed::DATA);
    assert_eq!(codes(&open(f).unwrap().top().check().unwrap()), [("cluster-shared", Some(Qed::L2 + 8))]);
    // A over B over A.
    let files = Files::one("a", Qed::new(1 << 30).backing(b"b").file).with("b", Qed::new(1 << 30).backing(b"a").file);
    let c = files.open("a").unwrap();
    assert_eq!(c.broken, Some(diskscope_core::chain::ChainBreak::Loop { name: String::from("a"), by: String::from("b"), offset: 512 }));
    // Backing names: longer than the limit, not UTF-8.
    let mut f = Qed::new(1 << 30).backing(b"bbbb").file;
    le32(&mut f, Qed::BACKING_SIZE, 5000);
    assert_eq!(open(f).err(), Some(Error::Limit { what: "backing file name length", needed: 5000, limit: 4095 }));
    let f = Qed::new(1 << 30).backing(b"b\xc3\x28").file;
    assert!(matches!(open(f), Err(Error::Invalid { format: "qed", offset: 512, .. })));
    // Cut inside the L1 and L2 tables: the map names the entry that cannot be followed.
    for (cut, entry, code) in [(Qed::L2 + 4, Qed::L1, "l1-entry-invalid"), (Qed::DATA + 4, Qed::L2, "l2-entry-invalid")] {
        let mut f = q.file.clone();
        f.truncate(cut as usize);
        let c = open(f).unwrap();
        let mut e = Vec::new();
        c.map(0, 65536, &mut e).unwrap();
        assert_eq!(e[0].invalid, Some(entry), "cut at {}", cut);
        assert!(codes(&c.top().check().unwrap()).contains(&(code, Some(entry))), "cut at {}", cut);
    }
}

#[test]
fn cow_names_not_terminated_or_not_utf8_and_bitmaps_shorter_than_the_disk() {
    use diskscope_core::chain::ChainBreak;
    let (files, top) = sample("cow");
    let with = |f: Vec<u8>| files.clone().with(&top, f);
    // 1024 bytes of name and no terminator: the whole field is the name.
    let mut f = files.0[&top].clone();
    put(&mut f, 8, &[b'z'; 1024]);
    let c = with(f).open(&top).unwrap();
    assert_eq!(c.broken, Some(ChainBreak::Missing { name: "z".repeat(1024), by: top.clone(), offset: 8 }));
    // Not UTF-8: replacement characters, still named where it is.
    let mut f = files.0[&top].clone();
    put(&mut f, 8, b"\xff\xfeb\0");
    let c = with(f).open(&top).unwrap();
    assert_eq!(c.broken, Some(ChainBreak::Missing { name: String::from("\u{fffd}\u{fffd}b"), by: top.clone(), offset: 8 }));
    // The bitmap cut short (the file ends 100 bytes into it), and a disk of 1 TiB whose
    // bitmap would need 256 MiB: both are named where the file ends.
    let mut f = files.0[&top].clone();
    f.truncate(1056 + 100);
    let r = with(f).open(&top).unwrap().top().check().unwrap();
    assert!(codes(&r).contains(&("bitmap-short", Some(1156))), "{:?}", codes(&r));
    let mut f = files.0[&top].clone();
    crate::gen::be64(&mut f, 1040, 1 << 40);
    let c = with(f.clone()).open(&top).unwrap();
    assert_eq!(c.virtual_size(), 1 << 40);
    let r = c.top().check().unwrap();
    assert!(codes(&r).contains(&("bitmap-short", Some(f.len() as u64))), "{:?}", codes(&r));
}

/// Block, cluster and disk sizes of 0, 2^31 and near 2^64 in the formats whose headers
/// carry them as plain numbers: each refused at its own field, or by the limit it breaks.
#[test]
fn sizes_of_zero_two_to_the_31_and_near_two_to_the_64() {
    use crate::gen::{be32, be64, le32, le64};
    use diskscope_core::limits::MAX_VIRTUAL_SIZE;
    enum Want {
        Field(u64),
        Limit(&'static str, u64),
        Opens,
    }
    let check = |what: &str, r: Result<diskscope_core::Chain, Error>, want: Want| match (r, want) {
        (Err(Error::Invalid { offset, .. }), Want::Field(at)) => assert_eq!(offset, at, "{}", what),
        (Err(Error::Limit { what: w, needed, limit }), Want::Limit(name, n)) => {
            assert_eq!((w, needed, limit), (name, n, MAX_VIRTUAL_SIZE), "{}", what)
        }
        (Ok(_), Want::Opens) => {}
        (r, _) => panic!("{}: {:?}", what, r.err()),
    };
    let open = |f: Vec<u8>| Files::one("a", f).open("a");
    // VDI: block_size (376) and disk_size (368).
    for (at, v, want) in [(376u64, 0u64, Want::Field(376)), (376, 1 << 31, Want::Field(376)), (368, u64::MAX, Want::Field(368)), (368, u64::MAX - 511, Want::Field(368))] {
        let mut f = crate::gen::vdi(16);
        if at == 368 { le64(&mut f, at, v) } else { le32(&mut f, at, v as u32) }
        check(&format!("vdi {} = {}", at, v), open(f), want);
    }
    // Parallels: sectors per cluster (28) and the disk's sectors (36).
    let rounded = (u64::MAX / 512) * 512;
    for (at, v, want) in [(28u64, 0u64, Want::Field(28)), (28, 1 << 31, Want::Field(28)), (36, u64::MAX, Want::Limit("Parallels disk size", u64::MAX)), (36, u64::MAX / 512, Want::Limit("Parallels disk size", rounded))] {
        let mut f = crate::gen::parallels(16);
        if at == 36 { le64(&mut f, at, v) } else { le32(&mut f, at, v as u32) }
        check(&format!("parallels {} = {}", at, v), open(f), want);
    }
    // VHD: block size (512 + 32; 2 GiB is a power of two, so it is read) and the footer's
    // current size (48), near 2^64 in both footer copies.
    for (at, v, want) in [(544u64, 0u64, Want::Field(544)), (544, 1 << 31, Want::Opens), (48, u64::MAX, Want::Limit("VHD disk size", rounded))] {
        let (mut f, mut foot) = crate::gen::vpc(16);
        if at == 48 {
            be64(&mut f, at, v);
            be64(&mut foot, at, v);
        } else {
            be32(&mut f, at, v as u32);
        }
        f.extend_from_slice(&foot);
        check(&format!("vpc {} = {}", at, v), open(f), want);
    }
}

/// A file of `size` bytes: `head` (shared between candidates), then zeros.
struct Lazy {
    head: std::sync::Arc<Vec<u8>>,
    size: u64,
}

impl diskscope_core::ReadAt for Lazy {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        buf.fill(0);
        let n = (self.head.len() as u64).saturating_sub(offset).min(buf.len() as u64) as usize;
        if n > 0 {
            buf[..n].copy_from_slice(&self.head[offset as usize..offset as usize + n]);
        }
        Ok(())
    }
}

/// A VDI child whose parent is named only by its UUID, in a folder of 1000 other VDI
/// images with 4 MiB block maps: probing them for the parent's identity would read 4 GB.
/// The open's byte budget stops the search, and the chain says which limit stopped it.
#[test]
fn a_parent_search_through_many_large_candidates_stops_at_the_open_budget() {
    use diskscope_core::chain::ChainBreak;
    use diskscope_core::{limits, ReadAt, Resolver};
    use std::sync::Arc;
    struct Folder {
        candidate: Arc<Vec<u8>>,
    }
    impl Resolver for Folder {
        fn resolve(&self, _: &str, _: &str) -> Option<(String, Arc<dyn ReadAt>)> {
            None
        }
        fn candidates(&self, _: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
            (0..1000)
                .map(|i| (format!("other{}.vdi", i), Arc::new(Lazy { head: self.candidate.clone(), size: 5 << 20 }) as Arc<dyn ReadAt>))
                .collect()
        }
    }
    let mut child = crate::gen::vdi(16);
    le32(&mut child, 76, 4); // differencing
    put(&mut child, 424, &[0x99; 16]); // the parent's UUID (uuid_link)
    let folder = Folder { candidate: Arc::new(crate::gen::vdi(1 << 20)) };
    let c = diskscope_core::Chain::open("child.vdi", Arc::new(diskscope_core::io::MemFile(child)), None, &folder).unwrap();
    match &c.broken {
        Some(ChainBreak::Unreadable { by, offset, error, .. }) => {
            assert_eq!((by.as_str(), *offset), ("child.vdi", 424));
            let limit = Error::Limit { what: "bytes read while opening one image (MAX_OPEN_BYTES)", needed: 0, limit: limits::MAX_OPEN_BYTES };
            let named = format!("{}", limit);
            assert!(error.starts_with(named.split(':').next().unwrap()) && error.ends_with(&format!("exceeds the limit of {} (see limits)", limits::MAX_OPEN_BYTES)), "{}", error);
        }
        other => panic!("{:?}", other),
    }
}
