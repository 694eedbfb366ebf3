#![allow(dead_code)] // each target uses one of these
//! What each fuzz target does with its input, shared with the regression test
//! (crate/core/tests/fuzz_regressions.rs) so every saved crash input is replayed by
//! `cargo test`. Each function does everything the page and the CLI do with an image.
use std::cell::RefCell;
use std::sync::Arc;

use diskscope_core::codec::{decode, Codec};
use diskscope_core::io::{MemFile, SparseFile};
use diskscope_core::{map::MapEntry, report::Report, Chain, ReadAt, Resolver};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Files cut from an input, named a, b, c, d; names resolve by their last path component.
/// Any other name takes the next file after the first (the same name the same file): the
/// seeds the core's tests write name their companions "disk.raw" or "base.qcow2", and
/// with names alone their companions were never found. A piece in SparseFile's form is a
/// file of any size, zeros but for its chunks (GOW's 32 MiB tables, sizes near 2^64).
struct Files {
    files: Vec<Arc<dyn ReadAt>>,
    /// Other names asked for, in order: the k-th is file k+1.
    others: RefCell<Vec<String>>,
}

impl Files {
    fn new(files: Vec<Arc<dyn ReadAt>>) -> Files {
        Files { files, others: RefCell::new(Vec::new()) }
    }

    fn get(&self, i: usize) -> (String, Arc<dyn ReadAt>) {
        (String::from(NAMES[i]), self.files[i].clone())
    }
}

fn file(bytes: &[u8]) -> Arc<dyn ReadAt> {
    match SparseFile::decode(bytes) {
        Some(f) => Arc::new(f),
        None => Arc::new(MemFile(bytes.to_vec())),
    }
}

impl Resolver for Files {
    fn resolve(&self, name: &str, _: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        let base = name.rsplit('/').next()?;
        let i = match NAMES.iter().position(|n| *n == base) {
            Some(i) => i,
            None => {
                let mut others = self.others.borrow_mut();
                1 + others.iter().position(|n| n == base).unwrap_or_else(|| {
                    others.push(String::from(base));
                    others.len() - 1
                })
            }
        };
        (i < self.files.len()).then(|| self.get(i))
    }
    fn candidates(&self, _: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        (0..self.files.len()).map(|i| self.get(i)).collect()
    }
}

/// One file: the first byte picks the probe (0) or a format by name, the rest is the file.
pub fn inspect(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let drivers = diskscope_core::formats::DRIVERS;
    let format = match pick as usize % (drivers.len() + 1) {
        0 => None,
        i => Some(drivers[i - 1].name),
    };
    let files = Files::new(vec![file(bytes)]);
    let (name, top) = files.get(0);
    if let Ok(chain) = Chain::open(&name, top, format, &files) {
        exercise(&chain);
    }
}

/// One format's driver forced on the first file, the others (cut as `chain` cuts them) its
/// possible companions: each format's parser gets its own corpus and its own plateau.
pub fn format(name: &str, data: &[u8]) {
    let files = split(data);
    let (key, top) = files.get(0);
    if let Ok(chain) = Chain::open(&key, top, Some(name), &files) {
        exercise(&chain);
    }
}

/// Up to four files cut at each "\n--\n", the first opened with the others as its possible
/// backing, data and parent files: chains, companions, loops, identities.
pub fn chain(data: &[u8]) {
    let files = split(data);
    let (name, top) = files.get(0);
    if let Ok(chain) = Chain::open(&name, top, None, &files) {
        exercise(&chain);
    }
}

fn split(data: &[u8]) -> Files {
    let mut files: Vec<Arc<dyn ReadAt>> = Vec::new();
    let mut rest = data;
    while files.len() < 3 {
        match rest.windows(4).position(|w| w == b"\n--\n") {
            Some(i) => {
                files.push(file(&rest[..i]));
                rest = &rest[i + 4..];
            }
            None => break,
        }
    }
    files.push(file(rest));
    Files::new(files)
}

/// Three bytes pick the codec and an output size from 1 byte to 2 MiB; the rest is input.
pub fn codec(data: &[u8]) {
    let Some((&[c, s1, s2], input)) = data.split_first_chunk::<3>() else { return };
    let codec = [Codec::Deflate, Codec::Zlib, Codec::Zstd][c as usize % 3];
    let size = 1 + ((s1 as usize) << 8 | s2 as usize) * 32;
    let mut out = vec![0u8; size];
    let _ = decode(codec, input, &mut out);
}

fn exercise(chain: &Chain) {
    let _ = Report::new(chain);
    let _ = chain.cells(4096);
    let (size, unit) = (chain.virtual_size(), chain.top().info().cluster_size);
    let _ = chain.cells_in(size / 3, size / 4 + 1, unit, 4096);
    for layer in &chain.layers {
        let image = &layer.image;
        let _ = image.check();
        let _ = image.records();
        let _ = image.host_map(4096);
        for g in image.grids() {
            let _ = chain.cells_at(g.size, 4096);
        }
        let size = image.info().virtual_size;
        for guest in [0, size / 2, size.saturating_sub(1)].into_iter().filter(|&g| g < size) {
            let _ = image.cluster_fields(guest);
        }
        let _ = image.block_versions(0, 1 << 20);
        let _ = diskscope_core::delta::histogram(&**image);
        // Walks size their windows by the run granule: it must be a lower bound on the runs
        // (but for a few at odd edges: the disk's end, a bitmap's end, a table's end).
        let (g, mut runs) = (image.run_granule(), Vec::new());
        if size > 0 && image.map(0, size.min(1 << 30), &mut runs).is_ok() {
            let short = runs.iter().rev().skip(1).filter(|e| e.length < g).count();
            assert!(short <= 8, "{} runs shorter than the run granule {}", short, g);
        }
    }
    let mut entries: Vec<MapEntry> = Vec::new();
    let _ = chain.map(0, size.min(1 << 30), &mut entries);
    let mut parts = 0u32;
    let _ = chain.plan(|_| {
        parts += 1;
        if parts > 100_000 { Err(diskscope_core::Error::Cancelled) } else { Ok(()) }
    });
    let mut buf = vec![0u8; 65536.min(size) as usize];
    let _ = chain.read(0, &mut buf);
    let _ = chain.read(size - buf.len() as u64, &mut buf);
    let mid = size / 2 / 512 * 512;
    let n = buf.len().min((size - mid) as usize);
    let _ = chain.read(mid, &mut buf[..n]);
}

/// The per-format targets (fuzz/fuzz_targets/fmt_*.rs) and the driver each forces, so the
/// regression test replays every target's saved inputs through the same driver.
pub const FORMAT_TARGETS: [(&str, &str); 13] = [
    ("fmt_vpc", "vpc"),
    ("fmt_qed", "qed"),
    ("fmt_qcow2", "qcow2"),
    ("fmt_qcow", "qcow"),
    ("fmt_cow", "cow"),
    ("fmt_rawcow", "raw-cow"),
    ("fmt_addcow", "add-cow"),
    ("fmt_gow", "gow"),
    ("fmt_fvd", "fvd"),
    ("fmt_vdi", "vdi"),
    ("fmt_vhdx", "vhdx"),
    ("fmt_parallels", "parallels"),
    ("fmt_vmdk", "vmdk"),
];
