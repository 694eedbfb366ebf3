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
