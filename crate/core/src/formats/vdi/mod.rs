//! VDI, VirtualBox's disk image: a 512-byte header, a block map of 32-bit entries, and
//! the data area of fixed-size blocks (1 MiB in practice). A map entry is the index of the
//! block in the data area, 0xffffffff for a block never written (read from the parent in a
//! differencing image, zeros otherwise), or 0xfffffffe for a block discarded (zeros).
//! Layout as VirtualBox's VDICore.h and QEMU's block/vdi.c read it; validity rules as QEMU
//! applies them where it reads the image, so our bytes are qemu-img convert's bytes.
//!
//! Differencing images name their parent only by its UUID (uuid_link = the parent's
//! uuid_image): [`Image::backing_identity`] lets the chain find it among the candidate files.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec::Vec};

use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_entries, read_exact_at, NoHoles, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
pub mod header;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
pub(crate) mod tests;

use header::{at, Header, HEADER_BYTES, SIGNATURE, TYPE_DIFF, TYPE_FIXED, VERSION_1_1};
use crate::formats::bytes::{is_zero, le32, ms_guid};

pub static DRIVER: Driver = Driver { name: "vdi", probe, open };

/// A block never written: the parent's bytes in a differencing image, zeros otherwise.
pub const UNALLOCATED: u32 = 0xffff_ffff;
/// A block discarded: reads as zeros, whatever the parent holds.
pub const DISCARDED: u32 = 0xffff_fffe;
/// QEMU's VDI_BLOCKS_IN_IMAGE_MAX: the map must fit in an int once rounded to a sector.
const MAX_BLOCKS: u64 = (i32::MAX as u64 + 1 - 512) / 4;

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    head.len() >= HEADER_BYTES && le32(head, at::SIGNATURE) == SIGNATURE
}

fn invalid(offset: usize, message: String) -> Error {
    Error::Invalid { format: "vdi", offset: offset as u64, message }
}

fn unsupported(offset: usize, message: String) -> Error {
    Error::Unsupported { format: "vdi", offset: offset as u64, message }
}

pub(crate) struct Vdi {
    file: Arc<dyn ReadAt>,
    name: String,
    header: Header,
    info: ImageInfo,
    /// The block map, `blocks_in_image` entries.
    bmap: Vec<u32>,
    block: u64,
    has_parent: bool,
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Vdi::open(file, ctx.name)?))
}

impl Vdi {
    fn open(file: Arc<dyn ReadAt>, name: &str) -> Result<Vdi> {
        // The header and, where VirtualBox and QEMU put it, the block map: one read.
        file.prefetch(&mut [(0, file.size().min(256 << 10))]);
        let mut raw = [0u8; HEADER_BYTES];
        read_exact_at(&*file, 0, &mut raw, "VDI header")?;
        let h = Header::parse(&raw);
        if h.signature != SIGNATURE {
            return Err(invalid(at::SIGNATURE, format!("bad signature {:#010x}: not a VDI image", h.signature)));
        }
        if h.version != VERSION_1_1 {
            return Err(unsupported(at::VERSION, format!("header version {}.{}; only 1.1 is read (as by QEMU)", h.version >> 16, h.version & 0xffff)));
        }
        if !h.offset_bmap.is_multiple_of(512) {
            return Err(unsupported(at::OFFSET_BMAP, format!("the block map offset {:#x} is not sector-aligned", h.offset_bmap)));
        }
        if !h.offset_data.is_multiple_of(512) {
            return Err(unsupported(at::OFFSET_DATA, format!("the data offset {:#x} is not sector-aligned", h.offset_data)));
        }
        if h.sector_size != 512 {
            return Err(unsupported(at::SECTOR_SIZE, format!("sector size {} is not 512", h.sector_size)));
        }
        let block = h.block_size as u64;
        if !block.is_power_of_two() || !(512..=1 << 28).contains(&block) {
            return Err(invalid(at::BLOCK_SIZE, format!("block size {} is not a power of two from 512 bytes to 256 MiB", block)));
        }
        let blocks = h.blocks_in_image as u64;
        if blocks > MAX_BLOCKS {
            return Err(unsupported(at::BLOCKS_IN_IMAGE, format!("{} blocks is more than QEMU's limit of {}", blocks, MAX_BLOCKS)));
        }
        // QEMU accepts odd sizes (VBoxManage convertfromraw makes them) and rounds them up.
        let disk_size = h.disk_size.checked_next_multiple_of(512).unwrap_or(u64::MAX);
        if disk_size > blocks * block {
            return Err(invalid(at::DISK_SIZE, format!("disk size {} is larger than the {} blocks of the block map cover", h.disk_size, blocks)));
        }
        if disk_size > limits::MAX_VIRTUAL_SIZE {
            return Err(Error::Limit { what: "VDI disk size", needed: disk_size, limit: limits::MAX_VIRTUAL_SIZE });
        }
        let link = &raw[at::UUID_LINK..at::UUID_LINK + 16];
        let has_parent = h.image_type == TYPE_DIFF || !is_zero(link);
        let bmap = read_entries(&*file, "VDI block map", h.offset_bmap as u64, blocks, 4, true, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))?;
        let variant = match h.image_type {
            TYPE_FIXED => "VDI 1.1, static (fixed)",
            TYPE_DIFF => "VDI 1.1, differencing",
            header::TYPE_UNDO => "VDI 1.1, undo",
            _ => "VDI 1.1, dynamic",
        };
        let backing = has_parent.then(|| BackingRef { name: String::new(), format: Some(String::from("vdi")), offset: at::UUID_LINK as u64 });
        // A static image is a sparse file whose holes QEMU reports as zeros (BDRV_BLOCK_RECURSE);
        // a dynamic one reports every allocated block as data.
        let file: Arc<dyn ReadAt> = if h.image_type == TYPE_FIXED { file } else { Arc::new(NoHoles(file)) };
        Ok(Vdi {
            file,
            name: String::from(name),
            info: ImageInfo {
                format: "vdi",
                variant: String::from(variant),
                layout: LayoutStatus::Confirmed,
                virtual_size: disk_size,
                cluster_size: block,
                backing,
                dirty: false,
                companions: Vec::new(),
            },
            header: h,
            bmap,
            block,
            has_parent,
        })
    }

    /// Host offset of block map entry `e` (an allocated index), before validation.
    fn block_offset(&self, e: u32) -> Option<u64> {
        (e as u64).checked_mul(self.block)?.checked_add(self.header.offset_data as u64)
    }

    fn entry_at(&self, i: u64) -> u64 {
        self.header.offset_bmap as u64 + i * 4
    }
}

impl Image for Vdi {
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        let i = guest / self.block;
        let Some(&e) = self.bmap.get(i as usize) else { return Ok(Vec::new()) };
        let value = match e {
            UNALLOCATED => format!("{:#x}: never written ({})", e, if self.has_parent { "read from the parent" } else { "reads as zeros" }),
            DISCARDED => format!("{:#x}: discarded, reads as zeros", e),
            e => match self.block_offset(e) {
                Some(off) => format!("data block {}, at byte {} of the file", e, off),
                None => format!("{}: invalid", e),
            },
        };
        Ok(alloc::vec![Field { name: format!("block map entry {}", i), offset: self.entry_at(i), size: 4, raw: e.to_le_bytes().to_vec(), value, note: String::from("the block's entry in the block map") }])
    }
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        self.header.fields()
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let h = &self.header;
        let mut r = alloc::vec![
            Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: HEADER_BYTES as u64 },
            Region { name: String::from("block map"), kind: RegionKind::Table, offset: h.offset_bmap as u64, length: self.bmap.len() as u64 * 4 },
        ];
        let size = self.file.size();
        if size > h.offset_data as u64 {
            r.push(Region { name: String::from("data blocks"), kind: RegionKind::Data, offset: h.offset_data as u64, length: size - h.offset_data as u64 });
        }
        Ok(r)
    }

    fn run_granule(&self) -> u64 {
        self.block
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let end = start + len;
        let size = self.file.size();
        let mut pos = start;
        while pos < end {
            let i = pos / self.block;
            let base = i * self.block;
            let stop = end.min(base + self.block);
            let e = self.bmap.get(i as usize).copied().unwrap_or(UNALLOCATED);
            let kind = match e {
                UNALLOCATED if self.has_parent => Kind::Unallocated,
                // QEMU reports never-written blocks of a base image as zeros it defines.
                UNALLOCATED | DISCARDED => Kind::Zero,
                e => match self.block_offset(e) {
                    Some(off) if off < size => Kind::Data { file: 0, offset: off + (pos - base) },
                    _ => Kind::Invalid { entry: self.entry_at(i) },
                },
            };
            Extent::push(out, Extent { start: pos, length: stop - pos, kind });
            pos = stop;
        }
        Ok(())
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        (index == 0).then_some(&self.file)
    }

    fn identity(&self) -> Option<String> {
        let id = self.header.uuid(at::UUID_IMAGE);
        (!is_zero(id)).then(|| format!("vdi-uuid:{}", ms_guid(id)))
    }

    fn backing_identity(&self) -> Option<String> {
        let link = self.header.uuid(at::UUID_LINK);
        (self.has_parent && !is_zero(link)).then(|| format!("vdi-uuid:{}", ms_guid(link)))
    }

    fn check(&self) -> Result<CheckResult> {
        check::run(self)
    }
}
