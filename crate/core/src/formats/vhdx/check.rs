//! VHDX consistency check. Corruptions are counted as QEMU's vhdx_co_check counts them
//! (vhdx_check_bat_entries: a fully present block that starts or ends past the end of the
//! file, or overlaps the log or a region), so the exit code is qemu-img check's; besides,
//! the headers, region tables, log and the BAT states QEMU does not look at are reported.
use alloc::{format, string::String, vec::Vec};

use super::structs::{MIB, REGION2_AT};
use super::*;
use crate::model::{CheckResult, Finding, Severity};

fn finding(x: &Vhdx, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: String) -> Finding {
    Finding { severity, code, file: x.name.clone(), offset: Some(offset), length, guest, message }
}

pub(super) fn run(x: &Vhdx) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let h = &x.headers[x.current];
    let size = x.file_size();
    if x.dirty {
        let message = if x.log.replayed {
            format!("the log holds {} entr{} not yet applied (log_guid is set): they were replayed in memory, as QEMU replays them when it opens the image for writing; the file itself was not changed. Open it as stored to see the metadata before the replay",
                x.log.active.len(), if x.log.active.len() == 1 { "y" } else { "ies" })
        } else if x.as_stored {
            String::from("the log holds updates not yet applied (log_guid is set); this view shows the metadata as stored, without them (the default view replays them in memory)")
        } else {
            String::from("log_guid is set but the log holds no valid sequence of entries to replay: the metadata is read as stored")
        };
        r.add(finding(x, Severity::Warning, "log-dirty", h.at + 48, 16, None, message));
    }
    for (at, message) in &x.log.problems {
        r.add(finding(x, if x.dirty { Severity::Corruption } else { Severity::Warning }, "log", *at, 0, None, message.clone()));
    }
    for (k, hd) in x.headers.iter().enumerate() {
        if !hd.valid() {
            r.add(finding(x, Severity::Warning, "header-invalid", hd.at, 4096, None, format!(
                "header {} is not valid ({}); header {} is used", k + 1, if !hd.crc_ok { "wrong CRC-32C" } else { "wrong signature or version" }, x.current + 1)));
        }
    }
    match &x.regions_other {
        Some(o) if o.raw == x.regions.raw => {}
        Some(o) if x.regions.at == REGION2_AT => r.add(finding(x, Severity::Warning, "region-table-invalid", o.at, 65536, None, String::from(
            "the first region table is damaged; the copy at 256 KiB is used (QEMU refuses the image)"))),
        _ => r.add(finding(x, Severity::Warning, "region-table-copies-differ", REGION2_AT, 65536, None, String::from(
            "the two copies of the region table differ (or the second is damaged)"))),
    }
    let m = &x.meta;
    if !m.virtual_size.is_multiple_of(m.logical as u64) {
        r.add(finding(x, Severity::Warning, "size-not-sectors", m.at, 0, None, format!("the disk size {} is not a multiple of the {}-byte logical sector", m.virtual_size, m.logical)));
    }
    if m.physical != 512 && m.physical != 4096 {
        r.add(finding(x, Severity::Warning, "physical-sector-size", m.at, 0, None, format!("physical sector size {} is neither 512 nor 4096", m.physical)));
    }
    let lo = x.log.offset;
    if h.log_length() > 0 && (lo < MIB || !lo.is_multiple_of(MIB)) {
        r.add(finding(x, Severity::Warning, "log-placement", h.at + 72, 8, None, format!("the log at {:#x} is not on a 1 MiB boundary past the header section (QEMU refuses the image)", lo)));
    }
    // The regions QEMU registers: the log, then every region of the table.
    let mut regions: Vec<(u64, u64, String)> = Vec::new();
    if x.log.length > 0 {
        regions.push((lo, lo.saturating_add(x.log.length), String::from("the log")));
    }
    for e in &x.regions.entries {
        let what = if e.guid == BAT_GUID { String::from("the BAT") } else if e.guid == METADATA_GUID { String::from("the metadata region") } else { format!("region {}", ms_guid(&e.guid)) };
        let (a, b) = (e.offset, e.offset.saturating_add(e.length as u64));
        if let Some((_, _, other)) = regions.iter().find(|(s, t, _)| a < *t && *s < b) {
            r.add(finding(x, Severity::Corruption, "regions-overlap", e.offset, e.length as u64, None, format!("{} overlaps {} (QEMU refuses the image)", what, other)));
        }
        regions.push((a, b, what));
    }
    bat(x, &regions, size, &mut r);
    if let Some(p) = &m.parent {
        for problem in &p.problems {
            r.add(finding(x, Severity::Warning, "parent-locator", m.at, 0, None, format!("parent locator: {}", problem)));
        }
        if x.differencing && p.get("parent_linkage").is_none() {
            r.add(finding(x, Severity::Corruption, "parent-linkage", m.at, 0, None, String::from(
                "the parent locator has no parent_linkage: the parent cannot be verified")));
        }
    }
    Ok(r)
}

fn bat(x: &Vhdx, regions: &[(u64, u64, String)], size: u64, r: &mut CheckResult) {
    let vsize = x.info.virtual_size;
    let data_blocks = vsize.div_ceil(x.block);
    let mut payload: Vec<(u64, u64)> = Vec::new();
    let mut counts = [0u64; 8];
    for (k, &e) in x.bat.iter().enumerate() {
        let k = k as u64;
        let at = x.entry_at(k);
        let state = e & 7;
        let off = e >> 20 << 20;
        let is_bitmap = (k + 1).is_multiple_of(x.chunk + 1);
        let block = k - k / (x.chunk + 1);
        let guest = (!is_bitmap && block < data_blocks).then_some(block * x.block);
        if is_bitmap {
            match state {
                0 => {}
                SB_PRESENT => {
                    if !x.differencing {
                        r.add_with(Severity::Info, 1, || finding(x, Severity::Info, "sector-bitmap-present", at, 8, None, format!("sector bitmap {} is present in a disk without a parent", k / (x.chunk + 1))));
                    }
                    if off < MIB || off.saturating_add(MIB) > size {
                        r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "sector-bitmap-outside", at, 8, None, format!(
                            "sector bitmap {} at {:#x} is in the header section or past the end of the file", k / (x.chunk + 1), off)));
                    }
                }
                s => r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "sector-bitmap-state", at, 8, None, format!("sector bitmap entry {} has state {}, which is not defined", k, s))),
            }
            continue;
        }
        counts[state as usize] += 1;
        match state {
            FULLY_PRESENT => {
                // QEMU's vhdx_check_bat_entries, entry by entry (it counts each problem).
                let length = if vsize > k * x.block { x.block.min(vsize - k * x.block) } else { u64::MAX };
                if off >= size {
                    r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "block-past-end", at, 8, guest, format!(
                        "payload block {} at {:#x} starts past the end of the file ({} bytes): the image was truncated and the block's data is lost", block, off, size)));
                } else if off.saturating_add(length) > size {
                    r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "block-truncated", at, 8, guest, format!(
                        "payload block {} at {:#x} ends past the end of the file ({} bytes): the image was truncated; the missing bytes read as zeros", block, off, size)));
                }
                if let Some((_, _, what)) = regions.iter().find(|(s, t, _)| off < *t && *s < off.saturating_add(x.block)) {
                    r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "block-over-region", at, 8, guest, format!("payload block {} at {:#x} overlaps {}", block, off, what)));
                } else if off < MIB {
                    r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "block-in-header", at, 8, guest, format!("payload block {} at {:#x} lies in the 1 MiB header section", block, off)));
                }
                payload.push((off, k));
            }
            PARTIALLY_PRESENT => {
                if !x.differencing {
                    r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "partial-without-parent", at, 8, guest, format!(
                        "payload block {} is PARTIALLY_PRESENT in a disk without a parent (QEMU fails to read it)", block)));
                } else if x.bat.get(x.bitmap_index(block) as usize).is_none_or(|&s| s & 7 != SB_PRESENT) {
                    r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "partial-without-bitmap", at, 8, guest, format!(
                        "payload block {} is PARTIALLY_PRESENT but its chunk has no sector bitmap", block)));
                }
                if x.usable(e).is_none() {
                    r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "block-outside", at, 8, guest, format!("payload block {} at {:#x} is in the header section or past the end of the file", block, off)));
                }
                payload.push((off, k));
            }
            NOT_PRESENT | UNDEFINED | ZERO | UNMAPPED_V095 | UNMAPPED => {}
            s => r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "block-state", at, 8, guest, format!("payload block {} has state {}, which is not defined", block, s))),
        }
    }
    payload.sort_unstable();
    for w in payload.windows(2) {
        if w[0].0.saturating_add(x.block) > w[1].0 {
            r.add_with(Severity::Corruption, 1, || finding(x, Severity::Corruption, "blocks-overlap", x.entry_at(w[1].1), 8, None, format!(
                "the payload blocks of BAT entries {} and {} overlap at {:#x}: writing one changes the other", w[0].1, w[1].1, w[1].0)));
        }
    }
    let stored = counts[FULLY_PRESENT as usize] + counts[PARTIALLY_PRESENT as usize];
    r.add(finding(x, Severity::Info, "blocks", x.bat_region.offset, x.bat.len() as u64 * 8, None, format!(
        "{} payload blocks: {} fully present, {} partially present, {} zero, {} unmapped, {} undefined, {} not present ({} stored in this file)",
        data_blocks, counts[FULLY_PRESENT as usize], counts[PARTIALLY_PRESENT as usize], counts[ZERO as usize],
        counts[UNMAPPED as usize] + counts[UNMAPPED_V095 as usize], counts[UNDEFINED as usize], counts[NOT_PRESENT as usize], stored)));
}
