//! Block versions across images: the histogram of one image's versions, and the delta
//! between a master and a local copy (seed 000's use case: a local copy fetches the blocks
//! whose version on the master is newer). Works on any image whose
//! [`Image::block_versions`] is `Some`; nothing here knows a format.
use alloc::{collections::BTreeMap, vec::Vec};

use crate::error::Error;
use crate::image::Image;
use crate::model::{Extent, Kind};

/// Blocks handled per step: bounds the versions and extents held at once.
const STEP_BLOCKS: u64 = 1 << 20;
/// Most runs kept per list; the totals stay exact past it (`runs_dropped` counts the rest).
pub const MAX_RUNS: usize = 1 << 22;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The two disks differ in size: they are not copies of one image.
    #[error("the master disk is {master} bytes and the local disk {local} bytes: a delta needs two copies of the same disk (same size)")]
    SizeDiffers { master: u64, local: u64 },
    /// One side keeps no block versions (a format without them, or GOW1/GOW2).
    #[error("the {side} image ({variant}) keeps no block versions: a delta needs two images that do, such as GOW3")]
    NoVersions { side: &'static str, variant: alloc::string::String },
    /// The two sides stamp blocks of different sizes.
    #[error("the master stamps versions per {master} bytes and the local image per {local} bytes: the blocks do not line up")]
    GranularityDiffers { master: u64, local: u64 },
    #[error(transparent)]
    Read(#[from] Error),
}

/// A run of consecutive blocks with the same versions on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct BlockRun {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub first_block: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub blocks: u64,
    /// Guest byte range of the run (the last block of the disk may be partial).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub start: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub length: u64,
    pub master_version: u32,
    pub local_version: u32,
}

/// A set of blocks: its runs and its totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct BlockSet {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub blocks: u64,
    /// Guest bytes of those blocks.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub bytes: u64,
    pub runs: Vec<BlockRun>,
    /// Runs not listed because [`MAX_RUNS`] was reached.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub runs_dropped: u64,
}

impl BlockSet {
    fn add(&mut self, block: u64, start: u64, length: u64, master_version: u32, local_version: u32) {
        self.blocks += 1;
        self.bytes += length;
        if let Some(r) = self.runs.last_mut() {
            if r.first_block + r.blocks == block && (r.master_version, r.local_version) == (master_version, local_version) {
                r.blocks += 1;
                r.length += length;
                return;
            }
        }
        if self.runs.len() < MAX_RUNS {
            self.runs.push(BlockRun { first_block: block, blocks: 1, start, length, master_version, local_version });
        } else {
            self.runs_dropped += 1;
        }
    }
}

/// What a local copy lacks and has beyond its master, block by block.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct Delta {
    /// Guest bytes per block.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub granularity: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub virtual_size: u64,
    /// Blocks covering the disk.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub blocks: u64,
    /// Master version greater than the local one: the blocks to fetch.
    pub master_newer: BlockSet,
    /// Local version greater than the master's: changed locally (or a master rolled back).
    pub local_newer: BlockSet,
    /// Stored on the master, never written on the local side.
    pub master_only: BlockSet,
    /// Stored on the local side, never written on the master.
    pub local_only: BlockSet,
}

/// Which blocks of `[first, first+count)` the image stores: the map says anything but
/// "unallocated" or "zero" for some byte of the block.
fn allocated(image: &dyn Image, granularity: u64, first: u64, count: u64) -> Result<Vec<bool>, Error> {
    let size = image.info().virtual_size;
    let start = first * granularity;
    let end = ((first + count) * granularity).min(size);
    let mut out = alloc::vec![false; count as usize];
    if start >= end {
        return Ok(out);
    }
    let mut extents: Vec<Extent> = Vec::new();
    image.map(start, end - start, &mut extents)?;
    for e in extents {
        if matches!(e.kind, Kind::Unallocated | Kind::Zero) || e.length == 0 {
            continue;
        }
        let a = e.start / granularity - first;
        let b = (e.start + e.length).div_ceil(granularity) - first;
        out[a as usize..b as usize].fill(true);
    }
    Ok(out)
}

fn versions_of(image: &dyn Image, side: &'static str, first: u64, count: u64) -> Result<crate::model::BlockVersions, DeltaError> {
    image.block_versions(first, count)?.ok_or_else(|| DeltaError::NoVersions { side, variant: image.info().variant.clone() })
}

/// The delta between a master and its local copy: both must keep block versions, of the
/// same block size, over disks of the same size.
pub fn delta(master: &dyn Image, local: &dyn Image) -> Result<Delta, DeltaError> {
    let (ms, ls) = (master.info().virtual_size, local.info().virtual_size);
    let m0 = versions_of(master, "master", 0, 0)?;
    let l0 = versions_of(local, "local", 0, 0)?;
    if ms != ls {
        return Err(DeltaError::SizeDiffers { master: ms, local: ls });
    }
    if m0.granularity != l0.granularity || m0.granularity == 0 {
        return Err(DeltaError::GranularityDiffers { master: m0.granularity, local: l0.granularity });
    }
    let g = m0.granularity;
    let blocks = ms.div_ceil(g);
    let mut d = Delta {
        granularity: g,
        virtual_size: ms,
        blocks,
        master_newer: BlockSet::default(),
        local_newer: BlockSet::default(),
        master_only: BlockSet::default(),
        local_only: BlockSet::default(),
    };
    let mut first = 0;
    while first < blocks {
        let n = (blocks - first).min(STEP_BLOCKS);
        let mv = versions_of(master, "master", first, n)?.versions;
        let lv = versions_of(local, "local", first, n)?.versions;
        let ma = allocated(master, g, first, n)?;
        let la = allocated(local, g, first, n)?;
        for k in 0..n as usize {
            let block = first + k as u64;
            let start = block * g;
            let length = g.min(ms - start);
            // A format that lists fewer versions than blocks: the rest count as 0.
            let (a, b) = (mv.get(k).copied().unwrap_or(0), lv.get(k).copied().unwrap_or(0));
            if a > b {
                d.master_newer.add(block, start, length, a, b);
            } else if b > a {
                d.local_newer.add(block, start, length, a, b);
            }
            match (ma[k], la[k]) {
                (true, false) => d.master_only.add(block, start, length, a, b),
                (false, true) => d.local_only.add(block, start, length, a, b),
                _ => {}
            }
        }
        first += n;
    }
    Ok(d)
}

/// How many blocks carry each version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct VersionCount {
    pub version: u32,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub blocks: u64,
    /// Guest bytes of those blocks.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub bytes: u64,
}

/// The versions of an image's blocks, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct VersionHistogram {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub granularity: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub blocks: u64,
    /// One entry per version present, lowest first (0 = never written).
    pub versions: Vec<VersionCount>,
}

/// The histogram of `image`'s block versions, or None when it keeps none.
pub fn histogram(image: &dyn Image) -> Result<Option<VersionHistogram>, Error> {
    let size = image.info().virtual_size;
    let Some(v0) = image.block_versions(0, 0)? else {
        return Ok(None);
    };
    let g = v0.granularity.max(1);
    let blocks = size.div_ceil(g);
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut first = 0;
    while first < blocks {
        let n = (blocks - first).min(STEP_BLOCKS);
        let vs = image.block_versions(first, n)?.map(|v| v.versions).unwrap_or_default();
        for k in 0..n {
            let block = first + k;
            let v = vs.get(k as usize).copied().unwrap_or(0);
            let c = counts.entry(v).or_default();
            c.0 += 1;
            c.1 += g.min(size - block * g);
        }
        first += n;
    }
    let versions = counts.into_iter().map(|(version, (blocks, bytes))| VersionCount { version, blocks, bytes }).collect();
    Ok(Some(VersionHistogram { granularity: g, blocks, versions }))
}
