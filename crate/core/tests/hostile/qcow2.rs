//! qcow2: the format with the most tables to damage. The check follows qemu-img check's
//! rules (a region is past the end only when it ends a whole cluster or more past it);
//! the map marks every entry it cannot follow as invalid and names the entry.
use diskscope_core::chain::ChainBreak;
use diskscope_core::map::MapEntry;
use diskscope_core::Error;

use crate::gen::{be32, be64, put, Qcow2};
use crate::{codes, Files};

fn open(f: Vec<u8>) -> Result<diskscope_core::Chain, Error> {
    Files::one("a", f).open("a")
}

fn first_run(f: Vec<u8>) -> MapEntry {
    let c = open(f).unwrap();
    let mut e = Vec::new();
    c.map(0, c.virtual_size(), &mut e).unwrap();
    e[0]
}

#[test]
fn truncated_at_every_interesting_offset() {
    let q = Qcow2::new(1 << 20);
    let cut = |n: u64| q.file[..n as usize].to_vec();
    // Shorter than the magic: not recognised, and the error shows the bytes that are there.
    assert_eq!(open(cut(0)).err(), Some(Error::UnknownFormat { head: String::new() }));
    assert_eq!(open(cut(4)).err(), Some(Error::UnknownFormat { head: String::from("514649fb") }));
    // Inside the version 2 header: the header runs past the end.
    for n in [8, 40, 71] {
        assert_eq!(open(cut(n)).err(), Some(Error::PastEnd { what: "qcow2 header", offset: 0, len: 72, file_size: n }));
    }
    // Inside the version 3 fields: the version 3 header runs past the end.
    for n in [72, 100, 103] {
        assert_eq!(open(cut(n)).err(), Some(Error::PastEnd { what: "qcow2 version 3 header", offset: 0, len: 104, file_size: n }));
    }
    // Whole header, no tables: the L1 and refcount tables are past the end (qemu-img's rule).
    let r = open(cut(104)).unwrap().top().check().unwrap();
    assert_eq!(codes(&r), [("past-end", Some(40)), ("past-end", Some(48)), ("refcount-too-low", Some(0))]);
    // Cut inside the L1 table, then inside the L2 table: guest cluster 0 maps through the
    // L1 entry, which the map names as invalid.
    for n in [Qcow2::L1 + 4, Qcow2::L2 + 4] {
        let e = first_run(cut(n));
        assert_eq!((e.start, e.invalid), (0, Some(Qcow2::L1)), "cut at {}", n);
        let mut buf = [0u8; 512];
        let err = open(cut(n)).unwrap().read(0, &mut buf).err();
        assert_eq!(err, Some(Error::CorruptMapping { guest: 0, file: String::from("a"), offset: Qcow2::L1 }), "cut at {}", n);
    }
    // Cut inside the data cluster: the cluster starts in the file, so it is data (as QEMU
    // reads it) and what is missing reads as zeros.
    let c = open(cut(Qcow2::DATA + 100)).unwrap();
    let mut buf = vec![0u8; 512];
    c.read(0, &mut buf).unwrap();
    assert_eq!((&buf[..100], &buf[100..]), (&[0x5a; 100][..], &[0u8; 412][..]));
}

#[test]
fn tables_pointing_at_themselves_or_past_the_end() {
    let q = Qcow2::new(1 << 20);
    // The L1 entry names the L1 table's own cluster as its L2 table.
    let mut f = q.file.clone();
    be64(&mut f, Qcow2::L1, Qcow2::L1 | Qcow2::COPIED);
    let r = open(f).unwrap().top().check().unwrap();
    assert_eq!(codes(&r), [("refcount-too-low", Some(Qcow2::L1)), ("leaked-clusters", Some(Qcow2::L2))]);
    // The L2 entry points 1 TiB past the end of a 384 KiB file.
    let mut f = q.file.clone();
    be64(&mut f, Qcow2::L2, (1 << 40) | Qcow2::COPIED);
    assert_eq!(first_run(f.clone()).invalid, Some(Qcow2::L2));
    let r = open(f).unwrap().top().check().unwrap();
    assert_eq!(codes(&r)[0], ("past-end", Some(Qcow2::L2)));
    assert_eq!(r.corruptions, 2, "{:?}", codes(&r));
}

#[test]
fn sizes_near_2_64_and_cluster_sizes_0_and_2_31() {
    let q = Qcow2::new(1 << 20);
    for size in [u64::MAX, u64::MAX - 511, (1 << 53) + 1] {
        let mut f = q.file.clone();
        be64(&mut f, Qcow2::SIZE, size);
        assert_eq!(open(f).err(), Some(Error::Limit { what: "qcow2 virtual size", needed: size, limit: diskscope_core::limits::MAX_VIRTUAL_SIZE }));
    }
    for bits in [0u32, 31, 63] {
        let mut f = q.file.clone();
        be32(&mut f, Qcow2::CLUSTER_BITS, bits);
        assert!(matches!(open(f), Err(Error::Invalid { format: "qcow2", offset: 20, .. })), "cluster_bits {}", bits);
    }
}

#[test]
fn two_l2_entries_sharing_a_cluster() {
    let mut f = Qcow2::new(1 << 20).file;
    be64(&mut f, Qcow2::L2 + 8, Qcow2::DATA | Qcow2::COPIED);
    let c = open(f).unwrap();
    let r = c.top().check().unwrap();
    assert_eq!(codes(&r), [("refcount-too-low", Some(Qcow2::DATA))]);
    // Both guest clusters read the shared bytes.
    let mut buf = vec![0u8; 2 * 65536];
    c.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a));
}

#[test]
fn backing_names_not_utf8_or_not_terminated_and_loops() {
    // Not UTF-8: shown with replacement characters, named as missing at its offset.
    let c = Files::one("a", Qcow2::new(1 << 20).backing(b"b\xff\xfe").file).open("a").unwrap();
    assert_eq!(c.broken, Some(ChainBreak::Missing { name: String::from("b\u{fffd}\u{fffd}"), by: String::from("a"), offset: 104 }));
    // A name whose length runs past the end of the file.
    let mut f = Qcow2::new(1 << 20).backing(b"bbbb").file;
    be32(&mut f, Qcow2::BACKING_SIZE, 1000);
    f.truncate(600);
    assert_eq!(open(f).err(), Some(Error::PastEnd { what: "backing file name", offset: 104, len: 1000, file_size: 600 }));
    // A over B over A: the loop is named where B names A.
    let files = Files::one("a", Qcow2::new(1 << 20).backing(b"b").file).with("b", Qcow2::new(1 << 20).backing(b"a").file);
    let c = files.open("a").unwrap();
    assert_eq!(c.layers.len(), 2);
    assert_eq!(c.broken, Some(ChainBreak::Loop { name: String::from("a"), by: String::from("b"), offset: 104 }));
    assert_eq!(c.broken.as_ref().unwrap().finding().code, "backing-chain");
    // An image that is its own backing file.
    let c = Files::one("a", Qcow2::new(1 << 20).backing(b"a").file).open("a").unwrap();
    assert_eq!(c.broken, Some(ChainBreak::Loop { name: String::from("a"), by: String::from("a"), offset: 104 }));
}

#[test]
fn a_compressed_cluster_that_inflates_past_its_cluster_reads_one_cluster() {
    let mut f = Qcow2::new(1 << 20).file;
    // 256 KiB of 0x11 deflated into one 64 KiB cluster's entry: QEMU (and diskscope) inflate
    // exactly one cluster and ignore the rest; nothing larger is ever allocated.
    let z = miniz_oxide::deflate::compress_to_vec(&vec![0x11u8; 4 * 65536], 6);
    let sectors = (z.len() as u64).div_ceil(512);
    be64(&mut f, Qcow2::L2, Qcow2::COMPRESSED | ((sectors - 1) << (62 - 8)) | Qcow2::DATA);
    put(&mut f, Qcow2::DATA, &z);
    let c = open(f.clone()).unwrap();
    let mut buf = vec![0u8; 2 * 65536];
    c.read(0, &mut buf).unwrap();
    assert!(buf[..65536].iter().all(|&b| b == 0x11) && buf[65536..].iter().all(|&b| b == 0));
    // Garbage where the deflate stream should be: the read fails and names the cluster.
    put(&mut f, Qcow2::DATA, &[0xff; 64]);
    match open(f).unwrap().read(0, &mut buf) {
        Err(Error::Invalid { format: "qcow2", offset, message }) => {
            assert_eq!(offset, Qcow2::L2);
            assert!(message.contains(&format!("deflate data at {:#x}", Qcow2::DATA)), "{}", message);
        }
        other => panic!("{:?}", other),
    }
}
