//! The one trait every format implements, and the driver record that opens it.
use alloc::{boxed::Box, sync::Arc, vec::Vec};

use crate::error::{Error, Result};
use crate::io::ReadAt;
use crate::model::{CheckResult, Extent, Field, ImageInfo, Record, Region};

/// An opened image: one layer of a chain, knowing nothing of its backing file but the name.
pub trait Image {
    fn info(&self) -> &ImageInfo;

    /// Every header field, in file order.
    fn header_fields(&self) -> Vec<Field>;

    /// Host-file layout: header, tables, data regions.
    fn regions(&self) -> Result<Vec<Region>>;

    /// Append extents covering exactly `[start, start+len)` of this layer, in guest order.
    /// `start + len` never exceeds the virtual size.
    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()>;
    /// The shortest run [`Image::map`] yields, but at the edges of the range asked for and
    /// of the disk: by default a walk's step ([`Image::runs_end`]) is `limits::MAP_WINDOW_RUNS`
    /// of them, so that its runs stay bounded and a huge empty disk takes few steps. Never
    /// more than the truth; a sector unless the format knows its runs are coarser.
    fn run_granule(&self) -> u64 {
        512
    }
    /// Where a walk from `pos` may end a step so that [`Image::map`] yields at most `runs`
    /// runs of this layer (never less than the truth; past `pos`). By default `runs`
    /// granules. A format whose runs are sectors in places and whole blocks elsewhere says
    /// more: with one run per unallocated block, a VHD claiming petabytes takes a few
    /// steps, not one per `runs` sectors (tens of millions).
    fn runs_end(&self, pos: u64, runs: u64) -> u64 {
        pos.saturating_add(runs.saturating_mul(self.run_granule().max(1)))
    }

    /// The files this layer reads, by index in [`Kind::Data`](crate::Kind::Data): 0 is the
    /// image, and index k > 0 is the file of `info().companions[k - 1]`.
    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>>;

    /// Decode bytes of an extent that is neither plain data nor zero (compressed clusters).
    fn read_computed(&self, extent: &Extent, guest: u64, buf: &mut [u8]) -> Result<()> {
        let _ = (guest, buf);
        Err(Error::Unsupported {
            format: self.info().format,
            offset: extent.start,
            message: alloc::string::String::from("this format has no computed extents"),
        })
    }

    /// This image's identity as a child would name it, tagged with its scheme
    /// ("vdi-uuid:…", "vmdk-cid:…"), for formats that name parents by identity.
    fn identity(&self) -> Option<alloc::string::String> {
        None
    }

    /// The identity the backing file must have (same scheme), when the header records one.
    /// With it, a parent is found among the candidate files even when no name is stored
    /// (then `info().backing.name` is empty), and a parent whose identity differs is reported.
    fn backing_identity(&self) -> Option<alloc::string::String> {
        None
    }

    /// The granularities the format's metadata works at, besides the cluster size, for
    /// drawing the map at each (empty for most formats).
    fn grids(&self) -> Vec<crate::model::Grid> {
        Vec::new()
    }

    /// The metadata that maps guest byte `guest` in this layer (its table entry, its bitmap
    /// bit, its version), each as a field with the offset it stands at in file 0, for the
    /// page's cell details. Empty for formats that do not describe it.
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        let _ = guest;
        Ok(Vec::new())
    }

    /// A full consistency check, as thorough as the format's own tool's.
    fn check(&self) -> Result<CheckResult>;

    /// The records of the image's journal or log, in file order (empty for formats without one).
    fn records(&self) -> Vec<Record> {
        Vec::new()
    }

    /// The image's internal snapshots, in table order (empty for formats without them).
    fn snapshots(&self) -> Vec<crate::model::Snapshot> {
        Vec::new()
    }

    /// What each host cluster of the image file holds (metadata, data, free, leaked), in at
    /// most `max_cells` cells; None for formats that do not account for host clusters.
    fn host_map(&self, max_cells: u64) -> Result<Option<crate::model::HostMap>> {
        let _ = max_cells;
        Ok(None)
    }

    /// Version numbers of blocks `[first_block, first_block+count)` (clipped to the blocks
    /// covering the disk), for formats that stamp blocks (GOW3); None for the others.
    fn block_versions(&self, first_block: u64, count: u64) -> Result<Option<crate::model::BlockVersions>> {
        let _ = (first_block, count);
        Ok(None)
    }
}

/// What opening needs besides the file: its name (for findings and for resolving names
/// relative to it) and the way to find the companion files it names.
pub struct OpenCtx<'a> {
    pub name: &'a str,
    pub resolver: &'a dyn crate::chain::Resolver,
    pub options: &'a OpenOptions,
}

/// Choices about which view of an image to open. Formats ignore what does not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Show metadata as stored, without applying a pending journal or log in memory
    /// (FVD's journal, VHDX's log). By default pending records are applied, as the
    /// format's own driver would on its next open; the file is never written either way.
    pub as_stored: bool,
    /// Read this internal snapshot (by id or name) instead of the current disk.
    pub snapshot: Option<alloc::string::String>,
}

/// A format: how to recognise it and how to open it.
pub struct Driver {
    /// qemu-img's name where it has one ("qed", "qcow2", "raw").
    pub name: &'static str,
    /// Does this look like our format? `head` is the first [`PROBE_BYTES`] (fewer if the file is shorter).
    pub probe: fn(head: &[u8], file: &dyn ReadAt) -> bool,
    pub open: fn(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>>,
}

pub const PROBE_BYTES: usize = 4096;
