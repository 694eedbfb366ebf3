//! Test support: a set of in-memory files that a chain resolves names against.
use alloc::{collections::BTreeMap, string::String, sync::Arc, vec::Vec};

use crate::chain::{Chain, Resolver};
use crate::io::{MemFile, ReadAt, SparseFile};

#[derive(Default)]
pub struct Files(pub BTreeMap<String, Vec<u8>>);

impl Files {
    pub fn new<'a>(files: impl IntoIterator<Item = (&'a str, Vec<u8>)>) -> Files {
        Files(files.into_iter().map(|(n, b)| (String::from(n), b)).collect())
    }

    /// Open `top` and the chain below it, resolving every name against these files.
    pub fn open(&self, top: &str) -> crate::error::Result<Chain> {
        Chain::open(top, Arc::new(MemFile(self.0[top].clone())), None, self)
    }
}

impl Resolver for Files {
    fn resolve(&self, name: &str, _by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        self.0.get(name).map(|b| (String::from(name), Arc::new(MemFile(b.clone())) as Arc<dyn ReadAt>))
    }
}

/// A file that counts the bytes read from it (its holes, where it has them, are its own).
pub struct Counted<F>(pub F, pub core::cell::Cell<u64>);

impl<F: ReadAt> ReadAt for Counted<F> {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::error::Result<()> {
        self.1.set(self.1.get() + buf.len() as u64);
        self.0.read_at(offset, buf)
    }
    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        self.0.allocation(offset, len)
    }
}

/// Save an image the tests built as a seed for the fuzz targets (scripts/fuzz.sh sets
/// DISKSCOPE_FUZZ_SEEDS): `files` are the top file then its companions, joined as the
/// targets cut them (fuzz/fuzz_targets/exercise.rs); a file over 64 KiB that is mostly
/// zeros goes in the sparse form ([`SparseFile::encode`]), so that it fits the targets'
/// input length. Without the variable nothing is written.
pub fn fuzz_seed(target: &str, name: &str, files: &[&[u8]]) {
    let Some(dir) = std::env::var_os("DISKSCOPE_FUZZ_SEEDS") else { return };
    let dir = std::path::Path::new(&dir).join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            seed.extend_from_slice(b"\n--\n");
        }
        let sparse = if f.len() > 64 << 10 { SparseFile::encode(f) } else { Vec::new() };
        if !sparse.is_empty() && sparse.len() < f.len() / 2 {
            seed.extend_from_slice(&sparse);
        } else {
            seed.extend_from_slice(f);
        }
    }
    std::fs::write(dir.join(name), seed).unwrap();
}

/// From every run's start (and from inside a run) of every layer, for budgets from one run
/// to a whole step, [`Image::runs_end`](crate::Image::runs_end) reaches no further than a
/// map with at most that many runs.
pub fn assert_steps_hold_their_budget(name: &str, chain: &Chain) {
    for layer in &chain.layers {
        let image = &layer.image;
        let size = image.info().virtual_size;
        let mut ext = Vec::new();
        image.map(0, size, &mut ext).unwrap();
        for (pos, edge) in ext.iter().map(|e| (e.start, 0)).chain([(size / 3, 1)]) {
            for runs in [1, 2, 3, 8, 64, 4096, crate::limits::MAP_WINDOW_RUNS] {
                let end = image.runs_end(pos, runs);
                assert!(end > pos, "{} ({}): a step from {} goes nowhere", name, layer.name, pos);
                let mut got = Vec::new();
                image.map(pos, end.min(size) - pos, &mut got).unwrap();
                // From inside a run, its end is one more.
                assert!(got.len() as u64 <= runs + edge, "{} ({}): {} runs from {} where {} were allowed: {:?}", name, layer.name, got.len(), pos, runs, got);
            }
        }
    }
}

/// Steps a whole walk of `chain` takes, and its runs as (start, length, data).
pub fn walk(chain: &Chain) -> (u64, Vec<(u64, u64, bool)>) {
    let step = chain.walk_steps();
    let (mut pos, mut steps) = (0, 0);
    while pos < chain.virtual_size() {
        pos = step(pos);
        steps += 1;
    }
    let mut runs = Vec::new();
    chain
        .for_each_entry(|e| {
            runs.push((e.start, e.length, e.data));
            Ok(())
        })
        .unwrap();
    (steps, runs)
}
