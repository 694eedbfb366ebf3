//! VDI consistency check. Counts what QEMU's vdi_co_check counts as corruptions (a block
//! index used twice, an index past blocks_in_image, a wrong blocks_allocated), so the exit
//! code is qemu-img check's; and reports besides what QEMU does not look at: blocks that lie
//! past the end of the file (a truncated image; QEMU reads zeros there) and unusual fields.
use alloc::{format, string::String, vec};

use super::header::{at, TYPE_DIFF, TYPE_FIXED};
use super::{Vdi, DISCARDED, UNALLOCATED};
use crate::error::Result;
use crate::image::Image;
use crate::limits;
use crate::model::{CheckResult, Finding, Severity};

fn finding(v: &Vdi, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: String) -> Finding {
    Finding { severity, code, file: v.name.clone(), offset: Some(offset), length, guest, message }
}

pub(super) fn run(v: &Vdi) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let h = &v.header;
    let blocks = v.bmap.len() as u64;
    if blocks * 4 > limits::MAX_TABLE_BYTES {
        // Cannot happen: open read the whole map. Kept so the owner map below is bounded.
        return Ok(r);
    }
    // owner[k] = the first block whose entry is k, for k < blocks_in_image.
    let mut owner = vec![UNALLOCATED; blocks as usize];
    let mut allocated = 0u64;
    let size = v.file.size();
    for (i, &e) in v.bmap.iter().enumerate() {
        if e == UNALLOCATED || e == DISCARDED {
            continue;
        }
        let entry_at = v.entry_at(i as u64);
        let guest = Some(i as u64 * v.block);
        if (e as u64) < blocks {
            allocated += 1;
            let k = e as usize;
            if owner[k] == UNALLOCATED {
                owner[k] = i as u32;
            } else {
                let first = owner[k];
                r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "block-shared", entry_at, 4, guest, format!(
                    "block {} points at data block {}, which block {} also uses: writing one changes the other", i, e, first)));
            }
        } else {
            r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "block-index-too-large", entry_at, 4, guest, format!(
                "block {} points at data block {}, past the {} blocks the image has room for", i, e, blocks)));
            continue;
        }
        // Not counted by QEMU (it reads zeros past the end of the file), but data is lost.
        match v.block_offset(e) {
            Some(off) if off.checked_add(v.block).is_some_and(|end| end <= size) => {}
            Some(off) if off < size => r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "block-truncated", entry_at, 4, guest, format!(
                "data block {} at {:#x} runs past the end of the file ({} bytes): the image was truncated; its missing bytes read as zeros", e, off, size))),
            _ => r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "block-past-end", entry_at, 4, guest, format!(
                "data block {} lies past the end of the file ({} bytes): the image was truncated and this block's data is lost", e, size))),
        }
    }
    if allocated != h.blocks_allocated as u64 {
        r.add(finding(v, Severity::Corruption, "blocks-allocated-mismatch", at::BLOCKS_ALLOCATED as u64, 4, None, format!(
            "the header says {} blocks are allocated, the block map holds {}", h.blocks_allocated, allocated)));
    }
    if h.block_extra != 0 {
        r.add(finding(v, Severity::Warning, "block-extra", at::BLOCK_EXTRA as u64, 4, None, format!(
            "block_extra is {}: VirtualBox keeps that many bytes of extra data per block, which QEMU (and diskscope, as QEMU) does not skip",
            h.block_extra)));
    }
    if h.image_type == TYPE_FIXED && v.bmap.iter().enumerate().any(|(i, &e)| e != i as u32) {
        r.add(finding(v, Severity::Info, "static-map-moved", h.offset_bmap as u64, blocks * 4, None, String::from(
            "a static image whose block map is not the identity: blocks were moved or discarded since it was made")));
    }
    if h.image_type == TYPE_DIFF && v.backing_identity().is_none() {
        r.add(finding(v, Severity::Corruption, "parent-uuid-missing", at::UUID_LINK as u64, 16, None, String::from(
            "a differencing image with no parent UUID (uuid_link): its parent cannot be identified")));
    }
    r.add(finding(v, Severity::Info, "blocks-used", h.offset_bmap as u64, blocks * 4, None, format!(
        "{} of {} blocks hold data in this file", allocated, blocks)));
    Ok(r)
}
