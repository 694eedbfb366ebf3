//! A raw image: guest offset X is file offset X. Never probed, only named or fallen back to.
use alloc::{boxed::Box, string::String, sync::Arc, vec, vec::Vec};

use crate::error::Result;
use crate::image::{Driver, Image, OpenCtx};
use crate::io::ReadAt;
use crate::model::*;

pub static DRIVER: Driver = Driver { name: "raw", probe: |_, _| false, open };

struct Raw {
    file: Arc<dyn ReadAt>,
    info: ImageInfo,
}

fn open(file: Arc<dyn ReadAt>, _ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    let info = ImageInfo {
        format: "raw",
        variant: String::from("raw"),
        layout: LayoutStatus::Confirmed,
        virtual_size: file.size(),
        cluster_size: 64 * 1024,
        backing: None,
        dirty: false,
        companions: Vec::new(),
    };
    Ok(Box::new(Raw { file, info }))
}

impl Image for Raw {
    fn info(&self) -> &ImageInfo {
        &self.info
    }
    fn header_fields(&self) -> Vec<Field> {
        Vec::new()
    }
    fn regions(&self) -> Result<Vec<Region>> {
        Ok(vec![Region { name: String::from("data"), kind: RegionKind::Data, offset: 0, length: self.file.size() }])
    }
    /// Guest offset X is file offset X; where the host knows the file is sparse, its holes
    /// are holes of the disk too.
    fn run_granule(&self) -> u64 {
        self.info.virtual_size
    }
    /// The host's runs, counted as map will ask for them: one where the host cannot tell.
    /// (A run per 4 KiB block, the most a host reports, took a billion steps over a sparse
    /// file claiming exabytes.)
    fn runs_end(&self, pos: u64, runs: u64) -> u64 {
        let size = self.info.virtual_size;
        let mut at = pos;
        for _ in 0..runs {
            match self.file.allocation(at, size.saturating_sub(at)) {
                Some((_, n)) if at < size => at = at.saturating_add(n.max(1)),
                _ => return u64::MAX,
            }
        }
        at
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let mut pos = start;
        let end = start + len;
        while pos < end {
            let (data, n) = self.file.allocation(pos, end - pos).map(|(d, n)| (d, n.clamp(1, end - pos))).unwrap_or((true, end - pos));
            let kind = if data { Kind::Data { file: 0, offset: pos } } else { Kind::Hole { file: 0, offset: pos } };
            Extent::push(out, Extent { start: pos, length: n, kind });
            pos += n;
        }
        Ok(())
    }
    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        (index == 0).then_some(&self.file)
    }
    fn check(&self) -> Result<CheckResult> {
        Ok(CheckResult::default())
    }
}

#[cfg(test)]
mod tests {
    use crate::chain::Chain;
    use crate::io::{MemFile, SparseFile};
    use crate::testutil::{assert_steps_hold_their_budget, walk, Files};
    use alloc::{sync::Arc, vec};

    /// A sparse raw file's runs are its host's data and holes: a step holds at most its
    /// budget of them, however large the file, and a file whose holes are unknown is one run
    /// in one step.
    #[test]
    fn a_step_holds_the_hosts_runs() {
        let mut f = SparseFile { size: 1 << 20, chunks: vec![] };
        for i in 0..64 {
            f.poke(i * 12288 + (i % 2) * 4096, &[1; 4096]);
        }
        let open = |f: Arc<dyn crate::io::ReadAt>| Chain::open("d.raw", f, Some("raw"), &Files::default()).unwrap();
        let sparse = open(Arc::new(f.clone()));
        assert_steps_hold_their_budget("sparse raw", &sparse);
        let (_, runs) = walk(&sparse);
        assert_eq!(runs.len(), 2 * 64, "a data run and a hole after it per chunk");
        let plain = open(Arc::new(MemFile(f.to_bytes())));
        assert_eq!(walk(&plain), (1, vec![(0, 1 << 20, true)]));
        // A file claiming 4 EiB, two blocks stored: a step over its holes, not a billion.
        let mut huge = SparseFile { size: 1 << 62, chunks: vec![] };
        huge.poke(1 << 40, &[1; 4096]);
        huge.poke(1 << 61, &[2; 4096]);
        let (steps, runs) = walk(&open(Arc::new(huge)));
        assert_eq!(steps, 1);
        assert_eq!(runs, vec![(0, 1 << 40, false), (1 << 40, 4096, true), ((1 << 40) + 4096, (1 << 61) - (1 << 40) - 4096, false), (1 << 61, 4096, true), ((1 << 61) + 4096, (1 << 61) - 4096, false)]);
    }
}
