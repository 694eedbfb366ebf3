//! Hostile images, made by a generator here: truncated headers and tables, tables pointing
//! at themselves or past the end, sizes near 2^64, cluster sizes of 0 and 2^31, loops in
//! backing chains, two tables sharing a cluster, names that are not UTF-8 or not
//! terminated, bitmaps shorter than the disk, garbage journals, compressed clusters that
//! inflate past their cluster, tables at the memory limit. Each case asserts the exact
//! error or finding (kind, offset, and the limit's name where one applies), then runs
//! everything the page and the CLI would run on it.
mod gen;
mod qcow2;
mod others;

use std::collections::BTreeMap;
use std::sync::Arc;

use diskscope_core::{io::MemFile, map::MapEntry, report::Report, Chain, CheckResult, Error, ReadAt, Resolver};

/// In-memory files a chain resolves names against.
#[derive(Default, Clone)]
pub struct Files(pub BTreeMap<String, Vec<u8>>);

impl Files {
    pub fn one(name: &str, bytes: Vec<u8>) -> Files {
        Files([(String::from(name), bytes)].into_iter().collect())
    }
    pub fn with(mut self, name: &str, bytes: Vec<u8>) -> Files {
        self.0.insert(String::from(name), bytes);
        self
    }
    pub fn open(&self, top: &str) -> Result<Chain, Error> {
        let chain = Chain::open(top, Arc::new(MemFile(self.0[top].clone())), None, self)?;
        exercise(&chain);
        Ok(chain)
    }
}

impl Resolver for Files {
    fn resolve(&self, name: &str, _by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        self.0.get(name).map(|b| (String::from(name), Arc::new(MemFile(b.clone())) as Arc<dyn ReadAt>))
    }
}

/// Everything the page and the CLI do with an opened image: none of it may panic or hang.
pub fn exercise(chain: &Chain) {
    let _ = Report::new(chain);
    let _ = chain.cells(4096);
    for layer in &chain.layers {
        let _ = layer.image.check();
        let _ = layer.image.records();
    }
    let size = chain.virtual_size();
    let mut entries: Vec<MapEntry> = Vec::new();
    let _ = chain.map(0, size.min(1 << 30), &mut entries);
    let mut buf = vec![0u8; 65536.min(size) as usize];
    let _ = chain.read(0, &mut buf);
    let _ = chain.read(size - buf.len() as u64, &mut buf);
}

/// The check's findings as (code, offset) pairs.
pub fn codes(r: &CheckResult) -> Vec<(&'static str, Option<u64>)> {
    r.findings.iter().map(|f| (f.code, f.offset)).collect()
}
