//! VDI images built from the header layout by the writer in sample.rs, read back through the
//! chain (a differencing child finds its parent by UUID alone), and mutated at random to
//! prove no input makes the reader panic.
use alloc::{string::String, sync::Arc, vec, vec::Vec};
use proptest::prelude::*;

use super::header::*;
use super::DISCARDED;
use crate::chain::{Chain, Resolver};
use crate::io::{MemFile, ReadAt};
use crate::testutil::Files;

/// A set of files where every file is a candidate parent of every other, as in one folder.
pub(crate) struct Folder(pub Files);

impl Resolver for Folder {
    fn resolve(&self, name: &str, by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        self.0.resolve(name, by)
    }
    fn candidates(&self, by: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        self.0 .0.iter().filter(|(n, _)| n.as_str() != by).map(|(n, b)| (n.clone(), Arc::new(MemFile(b.clone())) as Arc<dyn ReadAt>)).collect()
    }
}

impl Folder {
    pub fn open(&self, top: &str) -> crate::error::Result<Chain> {
        Chain::open(top, Arc::new(MemFile(self.0 .0[top].clone())), None, self)
    }
}

/// A file that counts the reads that reach it (what the browser pays for).
pub(crate) struct Counting(pub MemFile, pub core::cell::Cell<usize>);

impl ReadAt for Counting {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::error::Result<()> {
        self.1.set(self.1.get() + 1);
        self.0.read_at(offset, buf)
    }
}

/// Open `bytes` as `name`, map the whole disk, and say how many reads reached the file.
/// Probing takes two of them (the first 4 KiB, and the last 512 bytes for a fixed VHD's
/// footer) before the format's driver reads anything.
pub(crate) fn reads_to_map(name: &str, bytes: &[u8]) -> usize {
    let f = Arc::new(Counting(MemFile(bytes.to_vec()), core::cell::Cell::new(0)));
    let files = Files::new([(name, bytes.to_vec())]);
    let c = Chain::open(name, f.clone(), None, &files).unwrap();
    let mut e = Vec::new();
    c.for_each_entry(|x| {
        e.push(*x);
        Ok(())
    })
    .unwrap();
    f.1.get()
}

pub(crate) use super::sample::Writer;

fn read_all(c: &Chain) -> Vec<u8> {
    let mut got = vec![0u8; c.virtual_size() as usize];
    c.read(0, &mut got).unwrap();
    got
}

#[test]
fn header_fields_have_their_offsets_and_values() {
    let w = Writer::new(3 << 20, 1 << 20, TYPE_NORMAL, [7; 16], None);
    let c = Files::new([("a.vdi", w.file.clone())]).open("a.vdi").unwrap();
    let fields = c.top().header_fields();
    let get = |n: &str| fields.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no field {}", n)).clone();
    assert_eq!((get("signature").offset, get("signature").size, get("signature").value.as_str()), (64, 4, "0xbeda107f"));
    assert_eq!(get("signature").raw, vec![0x7f, 0x10, 0xda, 0xbe]);
    assert_eq!(get("version").value, "1.1");
    assert_eq!((get("offset_bmap").offset, get("offset_bmap").value.as_str()), (340, "512"));
    assert_eq!((get("offset_data").offset, get("offset_data").value.as_str()), (344, "1024"));
    assert_eq!((get("disk_size").offset, get("disk_size").size), (368, 8));
    assert_eq!(get("disk_size").value, "3 MiB (3145728 bytes)");
    assert_eq!(get("block_size").value, "1 MiB (1048576 bytes)");
    assert_eq!((get("blocks_in_image").offset, get("blocks_in_image").value.as_str()), (384, "3"));
    assert_eq!(get("uuid_image").value, "07070707-0707-0707-0707-070707070707");
    assert_eq!((get("uuid_link").offset, get("uuid_link").value.as_str()), (424, "(none)"));
    assert!(get("image_type").value.starts_with("1 = normal"));
    let i = c.top().info();
    assert_eq!((i.format, i.virtual_size, i.cluster_size, i.backing.is_none()), ("vdi", 3 << 20, 1 << 20, true));
    assert_eq!(c.top().identity().as_deref(), Some("vdi-uuid:07070707-0707-0707-0707-070707070707"));
}

#[test]
fn dynamic_and_static_images_read_as_written() {
    for ty in [TYPE_NORMAL, TYPE_FIXED] {
        let size = 5 * 65536 + 512;
        let mut w = Writer::new(size, 65536, ty, [1; 16], None);
        let mut model = vec![0u8; size as usize];
        for (i, off, len, fill) in [(1u32, 512u64, 1024u64, 0xaau8), (4, 0, 65536, 0x11), (5, 0, 512, 0x22), (1, 4096, 100, 0x33)] {
            w.write(i, off, len, fill);
            let g = (i as u64 * 65536 + off) as usize;
            model[g..g + len as usize].fill(fill);
        }
        w.set_entry(4, DISCARDED);
        model[4 * 65536..5 * 65536].fill(0);
        let c = Files::new([("a.vdi", w.file.clone())]).open("a.vdi").unwrap();
        assert_eq!(read_all(&c), model, "type {}", ty);
        // Discarding left blocks_allocated counting the block: the one thing check reports.
        let r = c.top().check().unwrap();
        let bad: Vec<_> = r.findings.iter().filter(|f| f.severity == crate::Severity::Corruption).map(|f| f.code).collect();
        assert_eq!(bad, ["blocks-allocated-mismatch"], "{:?}", r.findings);
    }
}

#[test]
fn a_differencing_child_finds_its_parent_by_uuid() {
    let size = 4u64 << 20;
    let mut parent = Writer::new(size, 1 << 20, TYPE_NORMAL, [0xaa; 16], None);
    parent.write(0, 0, 1 << 20, 0x50);
    parent.write(2, 0, 1 << 20, 0x52);
    let mut child = Writer::new(size, 1 << 20, TYPE_DIFF, [0xcc; 16], Some([0xaa; 16]));
    child.write(2, 4096, 512, 0x62);
    child.write(3, 0, 512, 0x63);
    child.set_entry(0, DISCARDED);
    let folder = Folder(Files::new([("child.vdi", child.file.clone()), ("other.vdi", Writer::new(size, 1 << 20, TYPE_NORMAL, [0xbb; 16], None).file), ("parent.vdi", parent.file.clone())]));
    let c = folder.open("child.vdi").unwrap();
    assert_eq!(c.layers.len(), 2, "{:?}", c.broken);
    assert_eq!(c.layers[1].name, "parent.vdi");
    assert!(c.findings.iter().any(|f| f.code == "parent-by-identity"), "{:?}", c.findings);
    let got = read_all(&c);
    let mut model = vec![0u8; size as usize];
    // Block 0 is discarded in the child: zeros although the parent has data. Block 2: the child allocated it (zero-filled) and wrote 512 bytes.
    model[(2 << 20) + 4096..(2 << 20) + 4608].fill(0x62);
    model[3 << 20..(3 << 20) + 512].fill(0x63);
    assert_eq!(got, model);
    // Block 1 comes from the parent (unallocated there too: zeros, depth 1).
    let mut entries = Vec::new();
    c.map(1 << 20, 1 << 20, &mut entries).unwrap();
    assert_eq!((entries[0].depth, entries[0].present, entries[0].zero), (1, true, true));
    // Without the parent the chain says which identity it needs.
    let alone = Folder(Files::new([("child.vdi", child.file.clone())])).open("child.vdi").unwrap();
    assert!(alone.broken.is_some());
    assert!(alone.broken.unwrap().finding().message.contains("vdi-uuid:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"));
}

#[test]
fn check_counts_what_qemu_counts() {
    let mut w = Writer::new(4 << 20, 1 << 20, TYPE_NORMAL, [1; 16], None);
    w.write(0, 0, 512, 1);
    w.write(1, 0, 512, 2);
    w.set_entry(2, 0); // shares data block 0 with block 0
    w.set_entry(3, 77); // past blocks_in_image and past the end of the file
    let r = Files::new([("a.vdi", w.file.clone())]).open("a.vdi").unwrap().top().check().unwrap();
    let codes: Vec<_> = r.findings.iter().map(|f| (f.code, f.offset)).collect();
    assert!(codes.contains(&("block-shared", Some(512 + 8))), "{:?}", codes);
    assert!(codes.contains(&("block-index-too-large", Some(512 + 12))), "{:?}", codes);
    assert!(codes.contains(&("blocks-allocated-mismatch", Some(at::BLOCKS_ALLOCATED as u64))), "{:?}", codes);
    assert!(!codes.contains(&("block-past-end", Some(512 + 12))), "counted once, as QEMU does: {:?}", codes);
    assert_eq!(r.corruptions, 3);
    assert_eq!(r.exit_code(), 2);
    // The entry past the file is an invalid mapping, and reading it says which entry.
    let c = Files::new([("a.vdi", w.file.clone())]).open("a.vdi").unwrap();
    let mut buf = vec![0u8; 512];
    let e = c.read(3 << 20, &mut buf).unwrap_err();
    assert!(matches!(e, crate::Error::CorruptMapping { offset, .. } if offset == 512 + 12), "{:?}", e);
}

/// A block map whose every entry shares block 0: each is counted, as QEMU counts them, but
/// only the first `MAX_FINDINGS` findings are kept (and only those are formatted).
#[test]
fn more_shared_blocks_than_findings_kept_are_all_counted() {
    let max = crate::limits::MAX_FINDINGS as u32;
    let n = max + 500;
    let mut w = Writer::new((n as u64) << 20, 1 << 20, TYPE_NORMAL, [1; 16], None);
    w.write(0, 0, 512, 1);
    for i in 1..n {
        w.set_entry(i, 0);
    }
    let r = Files::new([("a.vdi", w.file.clone())]).open("a.vdi").unwrap().top().check().unwrap();
    // n - 1 shared blocks, and blocks_allocated (1) disagrees with the n entries in use.
    assert_eq!(r.corruptions, n as u64);
    assert_eq!(r.findings.len(), max as usize);
    // Also counted past the limit: the mismatch and the blocks-used note.
    assert_eq!(r.findings_dropped, (n as u64 - 1 + 2) - max as u64);
    for (k, f) in r.findings.iter().enumerate() {
        assert_eq!((f.code, f.offset), ("block-shared", Some(512 + 4 * (k as u64 + 1))));
        assert_eq!(f.message, alloc::format!("block {} points at data block 0, which block 0 also uses: writing one changes the other", k + 1));
    }
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn bad_headers_are_refused_with_the_offset_of_the_field() {
    let w = Writer::new(1 << 20, 1 << 20, TYPE_NORMAL, [1; 16], None);
    let cases: [(usize, u32); 6] =
        [(at::VERSION, 0x0001_0000), (at::OFFSET_BMAP, 100), (at::OFFSET_DATA, 513), (at::SECTOR_SIZE, 4096), (at::BLOCK_SIZE, 3000), (at::BLOCKS_IN_IMAGE, 0)];
    for (off, val) in cases {
        let mut f = w.file.clone();
        f[off..off + 4].copy_from_slice(&val.to_le_bytes());
        match Files::new([("a.vdi", f)]).open("a.vdi") {
            Err(crate::Error::Invalid { offset, .. }) | Err(crate::Error::Unsupported { offset, .. }) => {
                let want = if off == at::BLOCKS_IN_IMAGE { at::DISK_SIZE } else { off };
                assert_eq!(offset, want as u64)
            }
            other => panic!("field at {}: expected a refusal, got {:?}", off, other.map(|_| ())),
        }
    }
}

#[test]
fn opening_and_mapping_takes_one_read_after_probing() {
    let mut w = Writer::new(64 << 20, 1 << 20, TYPE_NORMAL, [1; 16], None);
    for i in (0..64).step_by(3) {
        w.write(i, 0, 512, i as u8);
    }
    // Two reads to probe, one for the header and the block map.
    assert_eq!(reads_to_map("a.vdi", &w.file), 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    #[test]
    fn mutated_images_never_panic(muts in prop::collection::vec((0usize..2048, any::<u64>()), 1..8), diff in any::<bool>()) {
        let ty = if diff { TYPE_DIFF } else { TYPE_NORMAL };
        let mut w = Writer::new(3 << 16, 65536, ty, [3; 16], diff.then_some([4; 16]));
        w.write(0, 0, 4096, 9);
        w.write(2, 512, 512, 8);
        let mut f = w.file.clone();
        for (at, v) in muts {
            let at = at.min(f.len() - 8);
            f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        let folder = Folder(Files::new([("a.vdi", f), ("p.vdi", Writer::new(3 << 16, 65536, TYPE_NORMAL, [4; 16], None).file)]));
        if let Ok(chain) = folder.open("a.vdi") {
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
