//! Backing chains across formats: the top image, the file its header names, the file that
//! one names, and so on. A missing file, a loop or an unreadable layer ends the chain with
//! a [`ChainBreak`] the user can act on; it never ends the inspection.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec::Vec};

use crate::error::{Error, Result};
use crate::formats;
use crate::image::{Image, OpenOptions};
use crate::io::{CachedFile, Metered, OpenBudget, ReadAt};
use crate::limits;
use crate::model::{Finding, Severity};

/// Finds the files an image names. Natively: a path relative to the naming image's folder.
/// In the browser: a file among those the user dropped, by name.
pub trait Resolver {
    /// Open `name` as written in the header of the file known as `by`. Returns a key that is
    /// the same for the same file however it is named (for loop detection and display).
    fn resolve(&self, name: &str, by: &str) -> Option<(String, Arc<dyn ReadAt>)>;

    /// Every file that could be the parent of `by`, for parents named by identity (a UUID)
    /// rather than by name: natively the files in `by`'s folder, in the browser every
    /// dropped file. Each with its key, as `resolve` gives it.
    fn candidates(&self, _by: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        Vec::new()
    }

    /// How many chains are being opened inside one another (an add-cow's image file, an
    /// FVD data file) where this resolver is used. Set by [`Chain::open_with`]; leave it.
    fn nesting(&self) -> u32 {
        0
    }

    /// Whether the file known as `key` is one of the chains being opened around this one.
    /// Set by [`Chain::open_with`]; leave it.
    fn is_opening(&self, _key: &str) -> bool {
        false
    }
}

/// The resolver a chain hands to its formats: the caller's, counting how deep chains
/// are opened inside chains, so a file that names itself as its own data file ends in a
/// clear error instead of endless recursion.
struct Nested<'a> {
    inner: &'a dyn Resolver,
    depth: u32,
    /// The file whose chain is being opened with this resolver.
    key: &'a str,
}

impl Resolver for Nested<'_> {
    fn resolve(&self, name: &str, by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        self.inner.resolve(name, by)
    }
    fn candidates(&self, by: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        self.inner.candidates(by)
    }
    fn nesting(&self) -> u32 {
        self.depth
    }
    fn is_opening(&self, key: &str) -> bool {
        self.key == key || self.inner.is_opening(key)
    }
}

pub struct Layer {
    /// The key the resolver gave (a path or a dropped file's name).
    pub name: String,
    pub image: Box<dyn Image>,
}

/// Why the chain stops before its last backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case", tag = "kind"))]
pub enum ChainBreak {
    /// The named file is not there: the user should add it.
    Missing { name: String, by: String, offset: u64 },
    /// The named file is one already in the chain.
    Loop { name: String, by: String, offset: u64 },
    /// More layers than `limits::MAX_CHAIN_DEPTH`.
    TooDeep { by: String, limit: u64 },
    /// The file is there but could not be opened.
    Unreadable { name: String, by: String, offset: u64, error: String },
}

impl ChainBreak {
    pub fn finding(&self) -> Finding {
        let (by, offset, message) = match self {
            ChainBreak::Missing { name, by, offset } => (by, *offset, format!(
                "the backing file '{}' is missing: add it (beside the image, or drop it with the image) to read the data it holds", name)),
            ChainBreak::Loop { name, by, offset } => (by, *offset, format!(
                "the backing file '{}' is already in this chain: the chain loops, so it cannot be read", name)),
            ChainBreak::TooDeep { by, limit } => (by, 0, format!("the backing chain is deeper than {} files; diskscope stops there", limit)),
            ChainBreak::Unreadable { name, by, offset, error } => (by, *offset, format!("the backing file '{}' could not be opened: {}", name, error)),
        };
        // Only a loop is wrong in the image itself; the rest is about what was given to us.
        let severity = if matches!(self, ChainBreak::Loop { .. }) { Severity::Corruption } else { Severity::Warning };
        // The bytes at fault are the stored name (as many bytes as its UTF-8; a UTF-16 name
        // is twice that, so its first half is what a viewer highlights).
        let length = match self {
            ChainBreak::Missing { name, .. } | ChainBreak::Loop { name, .. } | ChainBreak::Unreadable { name, .. } => name.len() as u64,
            ChainBreak::TooDeep { .. } => 0,
        };
        Finding { severity, code: "backing-chain", file: by.clone(), offset: Some(offset), length, guest: None, message }
    }

    /// The error a read gets when it needs the layer that is not there.
    pub fn error(&self) -> Error {
        match self {
            ChainBreak::Missing { name, by, offset } => Error::MissingFile { name: name.clone(), by: by.clone(), offset: *offset },
            ChainBreak::Loop { name, by, offset } => {
                Error::Backing { name: name.clone(), by: by.clone(), offset: *offset, reason: String::from("it is already in the chain (a loop)") }
            }
            ChainBreak::Unreadable { name, by, offset, error } => {
                Error::Backing { name: name.clone(), by: by.clone(), offset: *offset, reason: error.clone() }
            }
            ChainBreak::TooDeep { limit, .. } => Error::Limit { what: "backing chain depth", needed: *limit + 1, limit: *limit },
        }
    }
}

pub struct Chain {
    /// Top first.
    pub layers: Vec<Layer>,
    pub broken: Option<ChainBreak>,
    /// What the chain itself has to say that does not break it (a parent found by its
    /// identity, a parent whose identity is not the one its child expects).
    pub findings: Vec<Finding>,
}

impl Chain {
    /// Open `file` (known as `name`) and follow its backing files. `format` forces the top
    /// image's format; otherwise it is probed and must be recognised.
    pub fn open(name: &str, file: Arc<dyn ReadAt>, format: Option<&str>, resolver: &dyn Resolver) -> Result<Chain> {
        Chain::open_with(name, file, format, resolver, &OpenOptions::default())
    }

    /// [`Chain::open`] with a choice of view. The options apply to the top image; backing
    /// files are read as their current state (a snapshot name means nothing to them).
    pub fn open_with(name: &str, file: Arc<dyn ReadAt>, format: Option<&str>, resolver: &dyn Resolver, options: &OpenOptions) -> Result<Chain> {
        let depth = resolver.nesting() + 1;
        if depth > limits::MAX_NESTING {
            return Err(Error::Limit { what: "images opened inside images (does a file name itself as its data file?)", needed: depth as u64, limit: limits::MAX_NESTING as u64 });
        }
        if resolver.is_opening(name) {
            return Err(Error::Invalid {
                format: "chain",
                offset: 0,
                message: format!("'{}' is already being opened around this: an image names itself as its own image or data file", name),
            });
        }
        let resolver = &Nested { inner: resolver, depth, key: name };
        let budget = alloc::rc::Rc::new(OpenBudget::default());
        // Under the cache, so only reads that reach the file are charged.
        let metered = |f: Arc<dyn ReadAt>| -> Arc<dyn ReadAt> { Arc::new(CachedFile::new(Arc::new(Metered::new(f, &budget)))) };
        let file = metered(file);
        let top = formats::open(file, name, format, false, resolver, options)?;
        let mut layers = alloc::vec![Layer { name: String::from(name), image: top }];
        let mut broken = None;
        let mut findings = Vec::new();
        while let Some(mut backing) = layers.last().and_then(|l| l.image.info().backing.clone()) {
            let child = layers.last().expect("the top is there");
            let by = child.name.clone();
            let want = child.image.backing_identity();
            if layers.len() >= limits::MAX_CHAIN_DEPTH {
                broken = Some(ChainBreak::TooDeep { by, limit: limits::MAX_CHAIN_DEPTH as u64 });
                break;
            }
            let named = if backing.name.is_empty() { None } else { resolver.resolve(&backing.name, &by) };
            let mut search = Ok(None);
            let found = named.or_else(|| {
                let id = want.as_deref()?;
                search = find_by_identity(resolver, &by, id, &layers, &metered);
                let hit = search.clone().ok()??;
                findings.push(note(&by, backing.offset, format!("the parent was found by its identity {} in '{}'", id, hit.0)));
                Some(hit)
            });
            if backing.name.is_empty() {
                backing.name = format!("(the file with {})", want.as_deref().unwrap_or("the parent's identity"));
            }
            if let Err(e) = search {
                broken = Some(ChainBreak::Unreadable { name: backing.name, by, offset: backing.offset, error: format!("{}", e) });
                break;
            }
            let Some((key, f)) = found else {
                broken = Some(ChainBreak::Missing { name: backing.name, by, offset: backing.offset });
                break;
            };
            if layers.iter().any(|l| l.name == key) {
                broken = Some(ChainBreak::Loop { name: backing.name, by, offset: backing.offset });
                break;
            }
            let f = metered(f);
            let below = OpenOptions { as_stored: options.as_stored, snapshot: None };
            match formats::open(f, &key, backing.format.as_deref(), true, resolver, &below) {
                Ok(image) => {
                    if let (Some(want), have) = (&want, image.identity()) {
                        if have.as_ref() != Some(want) {
                            let mut f = note(&by, backing.offset, format!(
                                "'{}' is named as the parent, but its identity is {} where {} is expected: it may not be the file this image was made over",
                                key, have.as_deref().unwrap_or("unknown"), want));
                            f.severity = Severity::Warning;
                            f.code = "parent-identity-mismatch";
                            findings.push(f);
                        }
                    }
                    layers.push(Layer { name: key, image })
                }
                Err(e) => {
                    broken = Some(ChainBreak::Unreadable { name: backing.name, by, offset: backing.offset, error: format!("{}", e) });
                    break;
                }
            }
        }
        budget.finish();
        Ok(Chain { layers, broken, findings })
    }

    pub fn top(&self) -> &dyn Image {
        &*self.layers[0].image
    }

    pub fn virtual_size(&self) -> u64 {
        self.top().info().virtual_size
    }
}

fn note(by: &str, offset: u64, message: String) -> Finding {
    Finding { severity: Severity::Info, code: "parent-by-identity", file: String::from(by), offset: Some(offset), length: 0, guest: None, message }
}

/// The first candidate not already in the chain whose identity is `id`. A candidate that
/// does not open is not the parent, unless the open's work budget ran out: then the search
/// stops with that error, which names the limit.
fn find_by_identity(
    resolver: &dyn Resolver,
    by: &str,
    id: &str,
    layers: &[Layer],
    metered: &dyn Fn(Arc<dyn ReadAt>) -> Arc<dyn ReadAt>,
) -> Result<Option<(String, Arc<dyn ReadAt>)>> {
    for (key, f) in resolver.candidates(by).into_iter().take(limits::MAX_CANDIDATES) {
        if layers.iter().any(|l| l.name == key) {
            continue;
        }
        match formats::open(metered(f.clone()), &key, None, false, resolver, &OpenOptions::default()) {
            Ok(img) if img.identity().as_deref() == Some(id) => return Ok(Some((key, f))),
            Err(e @ Error::Limit { what, .. }) if what.contains("(MAX_OPEN_") => return Err(e),
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Files;

    /// A QED header naming `backing` (as a writer in the tests would lay it out).
    fn qed_over(backing: &str) -> Vec<u8> {
        let cs = 4096u32;
        let mut f = alloc::vec![0u8; 3 * cs as usize];
        f[0..4].copy_from_slice(b"QED\0");
        f[4..8].copy_from_slice(&cs.to_le_bytes());
        f[8..12].copy_from_slice(&1u32.to_le_bytes());
        f[12..16].copy_from_slice(&1u32.to_le_bytes());
        f[16..24].copy_from_slice(&1u64.to_le_bytes());
        f[40..48].copy_from_slice(&(cs as u64).to_le_bytes());
        f[48..56].copy_from_slice(&(1u64 << 20).to_le_bytes());
        f[56..60].copy_from_slice(&64u32.to_le_bytes());
        f[60..64].copy_from_slice(&(backing.len() as u32).to_le_bytes());
        f[64..64 + backing.len()].copy_from_slice(backing.as_bytes());
        f
    }

    #[test]
    fn a_loop_is_a_break_not_a_hang() {
        let files = Files::new([("a.qed", qed_over("b.qed")), ("b.qed", qed_over("a.qed"))]);
        let c = files.open("a.qed").unwrap();
        assert_eq!(c.layers.len(), 2);
        assert_eq!(c.broken, Some(ChainBreak::Loop { name: String::from("a.qed"), by: String::from("b.qed"), offset: 64 }));
    }

    #[test]
    fn a_missing_file_is_named_with_where_it_was_named() {
        let c = Files::new([("t.qed", qed_over("base.raw"))]).open("t.qed").unwrap();
        assert_eq!(c.broken, Some(ChainBreak::Missing { name: String::from("base.raw"), by: String::from("t.qed"), offset: 64 }));
        assert!(c.broken.unwrap().finding().message.contains("'base.raw' is missing"));
    }
}
