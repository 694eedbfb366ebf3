//! Small sample images of every format, written in memory: the page's demo mode opens them
//! so a documentation page can link to a live layout of each format. Each format's
//! `sample.rs` writes its own (with the writer its tests use); the list is
//! [`crate::formats::DEMOS`]. Nothing here names a format.
use alloc::{string::String, sync::Arc, vec::Vec};

use crate::chain::{Chain, Resolver};
use crate::error::Result;
use crate::io::{MemFile, ReadAt};

/// One demo: a sample image (and the files it names) of one format.
pub struct Demo {
    /// The name in the page's `#demo=NAME`: the format's driver name, or that name with
    /// the variant ("gow1").
    pub name: &'static str,
    /// One line for the gallery: the format and what the sample holds.
    pub title: &'static str,
    /// What to look at in this sample's layout.
    pub about: &'static str,
    /// qemu-img's format name when QEMU reads the top image on its own (the tests convert
    /// the sample with it and compare the bytes).
    pub qemu: Option<&'static str>,
    pub build: fn() -> Sample,
}

/// The files of a sample, the top image first, each with the name the others use for it.
pub struct Sample {
    pub files: Vec<(String, Vec<u8>)>,
}

impl Sample {
    pub fn new<'a>(files: impl IntoIterator<Item = (&'a str, Vec<u8>)>) -> Sample {
        Sample { files: files.into_iter().map(|(n, b)| (String::from(n), b)).collect() }
    }

    pub fn top(&self) -> &str {
        self.files.first().map(|f| f.0.as_str()).unwrap_or("")
    }

    /// Open the top image and its chain, resolving names against the sample's files.
    pub fn open(&self) -> Result<Chain> {
        let bytes = self.files.first().map(|f| f.1.clone()).unwrap_or_default();
        Chain::open(self.top(), Arc::new(MemFile(bytes)), None, self)
    }
}

impl Resolver for Sample {
    fn resolve(&self, name: &str, _by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let (n, b) = self.files.iter().find(|(n, _)| n == base)?;
        Some((n.clone(), Arc::new(MemFile(b.clone())) as Arc<dyn ReadAt>))
    }

    fn candidates(&self, by: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        self.files.iter().filter(|(n, _)| n != by).map(|(n, b)| (n.clone(), Arc::new(MemFile(b.clone())) as Arc<dyn ReadAt>)).collect()
    }
}

/// Every demo, in the gallery's order.
pub fn all() -> &'static [&'static Demo] {
    crate::formats::DEMOS
}

pub fn find(name: &str) -> Option<&'static Demo> {
    all().iter().copied().find(|d| d.name.eq_ignore_ascii_case(name))
}

/// Write `v` at `at` in a file being built, growing it as needed (the table-based writers
/// fill tables after the clusters they point to).
pub(crate) fn put(b: &mut Vec<u8>, at: u64, v: &[u8]) {
    let at = at as usize;
    if b.len() < at + v.len() {
        b.resize(at + v.len(), 0);
    }
    b[at..at + v.len()].copy_from_slice(v);
}

/// The big-endian u64 at `at`.
pub(crate) fn get64(b: &[u8], at: u64) -> u64 {
    u64::from_be_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}

/// `len` bytes of readable text naming what they are, so the bytes of a sample look like
/// a file's and each cluster can be told apart in a hex view.
pub fn text(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut line = 0u32;
    while out.len() < len {
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b", line ");
        let digits = alloc::format!("{:05}\n", line);
        out.extend_from_slice(digits.as_bytes());
        line += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests;
