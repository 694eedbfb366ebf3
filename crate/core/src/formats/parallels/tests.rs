//! Parallels images built from docs/interop/parallels.txt by a writer kept here (both
//! magics, a Format Extension with a dirty bitmap), read back through the chain, checked,
//! and mutated at random to prove no input makes the reader panic.
use alloc::{vec, vec::Vec};
use proptest::prelude::*;

use super::ext;
use super::header::*;
use super::md5;
use crate::chain::Chain;
use crate::testutil::Files;

pub(crate) struct Writer {
    pub file: Vec<u8>,
    pub cluster: u64,
    pub ext_magic: bool,
}

impl Writer {
    /// Laid out as QEMU's parallels_co_create does (new magic: data area on a cluster
    /// boundary) or as old images are (old magic: data right after the BAT, data_off 0).
    pub fn new(size: u64, cluster: u64, ext_magic: bool) -> Writer {
        let entries = size.div_ceil(cluster);
        let bat_end = 64 + 4 * entries;
        let data = if ext_magic { bat_end.next_multiple_of(cluster) } else { bat_end.next_multiple_of(512) };
        let mut file = vec![0u8; data as usize];
        file[..16].copy_from_slice(if ext_magic { MAGIC_EXT } else { MAGIC_OLD });
        let put = |f: &mut Vec<u8>, at: usize, v: &[u8]| f[at..at + v.len()].copy_from_slice(v);
        put(&mut file, at::VERSION, &2u32.to_le_bytes());
        put(&mut file, at::HEADS, &16u32.to_le_bytes());
        put(&mut file, at::CYLINDERS, &((size / 512 / 16 / 32) as u32).to_le_bytes());
        put(&mut file, at::TRACKS, &((cluster / 512) as u32).to_le_bytes());
        put(&mut file, at::BAT_ENTRIES, &(entries as u32).to_le_bytes());
        put(&mut file, at::NB_SECTORS, &(size / 512).to_le_bytes());
        if ext_magic {
            put(&mut file, at::DATA_OFF, &((data / 512) as u32).to_le_bytes());
        }
        Writer { file, cluster, ext_magic }
    }
    fn unit(&self) -> u64 {
        if self.ext_magic {
            self.cluster
        } else {
            512
        }
    }
    pub fn entry(&self, i: u64) -> u32 {
        let at = 64 + 4 * i as usize;
        u32::from_le_bytes(self.file[at..at + 4].try_into().unwrap())
    }
    pub fn set_entry(&mut self, i: u64, v: u32) {
        let at = 64 + 4 * i as usize;
        self.file[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// Append one cluster (old magic: the file's end may be any sector).
    fn append(&mut self) -> u64 {
        let at = self.file.len() as u64;
        self.file.resize((at + self.cluster) as usize, 0);
        at
    }
    pub fn write(&mut self, i: u64, fill: u8) {
        let mut e = self.entry(i) as u64 * self.unit();
        if e == 0 {
            e = self.append();
            self.set_entry(i, (e / self.unit()) as u32);
        }
        self.file[e as usize..(e + self.cluster) as usize].fill(fill);
    }
    /// A Format Extension with one dirty bitmap (granularity in sectors) marking `dirty`
    /// granules, stored in as many clusters as it takes.
    pub fn add_bitmap(&mut self, id: [u8; 16], gran_sectors: u32, dirty: &[u64]) -> u64 {
        let ext_at = self.append();
        let total = u64::from_le_bytes(self.file[at::NB_SECTORS..at::NB_SECTORS + 8].try_into().unwrap());
        let granules = (total * 512).div_ceil(gran_sectors as u64 * 512);
        let per_cluster = self.cluster * 8;
        let l1_size = granules.div_ceil(per_cluster);
        let mut l1 = vec![0u64; l1_size as usize];
        for k in 0..l1_size {
            let mine: Vec<u64> = dirty.iter().copied().filter(|g| g / per_cluster == k).collect();
            if mine.is_empty() {
                continue;
            }
            let c = self.append();
            for g in mine {
                let bit = g % per_cluster;
                self.file[(c + bit / 8) as usize] |= 1 << (bit % 8);
            }
            l1[k as usize] = c / 512;
        }
        let x = ext_at as usize;
        let mut body = Vec::new();
        body.extend_from_slice(&ext::DIRTY_BITMAP.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&((32 + 8 * l1_size) as u32).to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&total.to_le_bytes());
        body.extend_from_slice(&id);
        body.extend_from_slice(&gran_sectors.to_le_bytes());
        body.extend_from_slice(&(l1_size as u32).to_le_bytes());
        for e in &l1 {
            body.extend_from_slice(&e.to_le_bytes());
        }
        body.extend_from_slice(&[0u8; 24]); // end of features
        self.file[x..x + 8].copy_from_slice(&ext::MAGIC.to_le_bytes());
        self.file[x + 24..x + 24 + body.len()].copy_from_slice(&body);
        let sum = md5::digest(&self.file[x + 24..x + self.cluster as usize]);
        self.file[x + 8..x + 24].copy_from_slice(&sum);
        self.file[at::EXT_OFF..at::EXT_OFF + 8].copy_from_slice(&(ext_at / 512).to_le_bytes());
        ext_at
    }
}

fn open(f: &[u8]) -> crate::error::Result<Chain> {
    Files::new([("a.hds", f.to_vec())]).open("a.hds")
}

#[test]
fn both_magics_read_as_written_and_check_clean() {
    for ext_magic in [true, false] {
        let (cs, size) = (4096u64, 20 * 4096 + 1024);
        let mut w = Writer::new(size, cs, ext_magic);
        let mut model = vec![0u8; size as usize];
        for (i, fill) in [(3u64, 0x33u8), (0, 0x10), (5, 0x55), (4, 0x44), (20, 0x20)] {
            w.write(i, fill);
            let a = (i * cs) as usize;
            let b = ((i + 1) * cs).min(size) as usize;
            model[a..b].fill(fill);
        }
        let c = open(&w.file).unwrap();
        assert_eq!(c.virtual_size(), size);
        let mut got = vec![0u8; size as usize];
        c.read(0, &mut got).unwrap();
        assert!(got == model, "ext_magic {}", ext_magic);
        let r = c.top().check().unwrap();
        assert_eq!((r.corruptions, r.leaks, r.allocated_clusters, r.total_clusters), (0, 0, 5, 21), "{:?}", r.findings);
        // Host order 3, 0, 5, 4, 20; in guest order 0 | 3, 4, 5 | 20 (an empty entry breaks
        // the run, as QEMU counts): 4 after 3 and 5 after 4 are not where they would follow.
        assert_eq!(r.fragmented_clusters, 2);
    }
}

#[test]
fn header_fields_have_their_offsets_and_values() {
    let w = Writer::new(1 << 20, 65536, true);
    let c = open(&w.file).unwrap();
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {}", n)).clone();
    assert_eq!((get("magic").offset, get("magic").size, get("magic").value.as_str()), (0, 16, "\"WithouFreSpacExt\""));
    assert_eq!((get("version").offset, get("version").value.as_str()), (16, "2"));
    assert_eq!((get("tracks").offset, get("tracks").value.as_str()), (28, "128 sectors = 64 KiB (65536 bytes)"));
    assert_eq!((get("bat_entries").offset, get("bat_entries").value.as_str()), (32, "16"));
    assert_eq!((get("nb_sectors").offset, get("nb_sectors").size), (36, 8));
    assert_eq!(get("nb_sectors").raw, 2048u64.to_le_bytes().to_vec());
    assert_eq!((get("data_off").offset, get("data_off").value.as_str()), (48, "128 sectors = byte 65536"));
    assert_eq!((get("ext_off").offset, get("ext_off").value.as_str()), (56, "0 (no Format Extension)"));
    let i = c.top().info();
    assert_eq!((i.format, i.virtual_size, i.cluster_size, i.dirty), ("parallels", 1 << 20, 65536, false));
}

#[test]
fn the_dirty_bitmap_extension_is_shown() {
    let mut w = Writer::new(1 << 20, 4096, true);
    w.write(1, 0x11);
    // 64 KiB granules: 16 bits; dirty 0, 1, 2 and 9.
    let ext_at = w.add_bitmap([0x42; 16], 128, &[0, 1, 2, 9]);
    let c = open(&w.file).unwrap();
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {} in {:?}", n, fields)).clone();
    assert_eq!(get("extension magic").offset, ext_at);
    assert!(get("extension checksum").value.ends_with("(matches)"), "{}", get("extension checksum").value);
    assert!(get("feature 0").value.starts_with("dirty bitmap"), "{}", get("feature 0").value);
    assert!(get("feature 0 bitmap").value.contains("id 42424242-4242-4242-4242-424242424242"), "{}", get("feature 0 bitmap").value);
    assert_eq!(get("feature 0 dirty ranges").value, "4 granules dirty (262144 bytes): 0x0-0x30000, 0x90000-0xa0000");
    assert!(get("feature 1").value.starts_with("end of features"));
    let r = c.top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.findings);
    assert!(c.top().regions().unwrap().iter().any(|g| g.name.starts_with("dirty bitmap")));
    // One flipped byte in the extension: the MD5 no longer matches, and check says so.
    let mut bad = w.file.clone();
    bad[ext_at as usize + 4000] ^= 1;
    let r = open(&bad).unwrap().top().check().unwrap();
    assert!(r.findings.iter().any(|f| f.code == "format-extension" && f.offset == Some(ext_at + 8)), "{:?}", r.findings);
}

#[test]
fn check_counts_what_qemu_counts() {
    let mk = || {
        let mut w = Writer::new(16 * 65536, 65536, true);
        for i in 0..3 {
            w.write(i, i as u8 + 1);
        }
        w
    };
    // Leaked space at the end: one cluster (and a half, rounded up).
    let mut w = mk();
    w.file.extend(vec![0u8; 65536 + 100]);
    let r = open(&w.file).unwrap().top().check().unwrap();
    assert_eq!((r.corruptions, r.leaks, r.exit_code()), (0, 2, 3), "{:?}", r.findings);
    // The in-use flag.
    let mut w = mk();
    w.file[at::INUSE..at::INUSE + 4].copy_from_slice(&INUSE_DIRTY.to_le_bytes());
    let c = open(&w.file).unwrap();
    assert!(c.top().info().dirty);
    assert_eq!(c.top().check().unwrap().corruptions, 1);
    // Two entries for one cluster, and a cluster past the end of the file.
    let mut w = mk();
    let first = w.entry(0);
    w.set_entry(2, first);
    w.set_entry(5, 1000);
    let c = open(&w.file).unwrap();
    let r = c.top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().map(|f| (f.code, f.offset)).collect();
    assert!(codes.contains(&("cluster-shared", Some(64 + 8))), "{:?}", codes);
    assert!(codes.contains(&("cluster-outside", Some(64 + 20))), "{:?}", codes);
    assert_eq!(r.corruptions, 2);
    // The cluster past the end is an invalid mapping naming its entry.
    let mut buf = vec![0u8; 512];
    let e = c.read(5 * 65536, &mut buf).unwrap_err();
    assert!(matches!(e, crate::Error::CorruptMapping { offset: 84, .. }), "{:?}", e);
    // A data_off inside the BAT.
    let mut w = mk();
    w.file[at::DATA_OFF..at::DATA_OFF + 4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(open(&w.file).unwrap().top().check().unwrap().corruptions, 1);
}

#[test]
fn bad_headers_are_refused_with_the_offset_of_the_field() {
    let w = Writer::new(1 << 20, 65536, true);
    for (off, val) in [(at::VERSION, 3u32), (at::TRACKS, 0), (at::TRACKS, 1 << 23), (at::BAT_ENTRIES, 1 << 30)] {
        let mut f = w.file.clone();
        f[off..off + 4].copy_from_slice(&val.to_le_bytes());
        match open(&f) {
            // A wrong version is not probed as Parallels at all: the file is not recognised.
            Err(crate::Error::Invalid { offset, .. }) => assert_eq!(offset, off as u64),
            Err(crate::Error::UnknownFormat { .. }) if off == at::VERSION => {}
            other => panic!("field at {}: expected a refusal, got {:?}", off, other.map(|_| ())),
        }
    }
}

#[test]
fn opening_and_mapping_takes_one_read_after_probing() {
    let mut w = Writer::new(64 * 65536, 65536, true);
    for i in (0..64).step_by(3) {
        w.write(i, 1);
    }
    // Two reads to probe, one for the header and the BAT.
    assert_eq!(crate::formats::vdi::tests::reads_to_map("a.hds", &w.file), 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..12288, any::<u64>()), 1..8), ext_magic in any::<bool>(), bitmap in any::<bool>()) {
        let mut w = Writer::new(64 * 4096, 4096, ext_magic);
        w.write(0, 1);
        w.write(7, 2);
        if bitmap {
            w.add_bitmap([1; 16], 8, &[0, 5]);
        }
        let mut f = w.file.clone();
        for (at, v) in muts {
            let at = at.min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        if let Ok(chain) = open(&f) {
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
