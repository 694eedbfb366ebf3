//! Parallels consistency check, as QEMU's parallels_co_check does it (without repairing):
//! the in-use flag and a bad data_off are one error each, every cluster past the end of
//! the file is an error, space after the last cluster is leaked (counted in clusters), two
//! entries naming one cluster are an error; allocation and fragmentation are counted over
//! the clusters inside the image. Two deliberate differences: QEMU aborts on a cluster past
//! the end and fails on a shared cluster after counting it; we report both and go on. And we
//! say what QEMU does not look at: clusters in the header or BAT, misaligned clusters, the
//! Format Extension.
use alloc::{format, string::String, vec};

use super::header::{at, HEADER_BYTES, INUSE_CLOSED, INUSE_DIRTY};
use super::Parallels;
use crate::error::Result;
use crate::limits;
use crate::model::{CheckResult, Finding, Severity};

fn finding(p: &Parallels, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: String) -> Finding {
    Finding { severity, code, file: p.name.clone(), offset: Some(offset), length, guest, message }
}

pub(super) fn run(p: &Parallels) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let h = &p.header;
    let cs = p.cluster;
    let size = p.file.size();
    match h.inuse {
        INUSE_DIRTY => r.add(finding(p, Severity::Corruption, "not-closed", at::INUSE as u64, 4, None, String::from(
            "the image was not closed correctly (in_use is set): the BAT on disk may miss clusters written last"))),
        0 | INUSE_CLOSED => {}
        v => r.add(finding(p, Severity::Warning, "in-use-value", at::INUSE as u64, 4, None, format!("in_use holds {:#x}, which is neither open nor closed", v))),
    }
    if !p.data_off_ok {
        r.add(finding(p, Severity::Corruption, "data-off", at::DATA_OFF as u64, 4, None, format!(
            "data_off is {} sectors; it must lie between the end of the BAT ({} sectors) and the end of the file", h.data_off, p.data_start)));
    }
    let bat_bytes = p.bat.len() as u64 * 4;
    if p.bat_stored < bat_bytes {
        r.add(finding(p, Severity::Corruption, "bat-truncated", HEADER_BYTES as u64 + p.bat_stored, bat_bytes - p.bat_stored, None, format!(
            "the BAT runs past the end of the file: {} of its {} bytes are missing and read as 'not allocated'", bat_bytes - p.bat_stored, bat_bytes)));
    }
    // data_end as QEMU's open computes it: past every cluster any entry names.
    let mut data_end = p.data_start;
    let mut high = 0u64;
    for (i, &e) in p.bat.iter().enumerate() {
        let sector = e as u64 * p.multiplier;
        // QEMU counts empty entries too (sector 0 + one cluster).
        data_end = data_end.max(sector.saturating_add(h.tracks as u64));
        if e == 0 {
            continue;
        }
        let off = sector.saturating_mul(512);
        let guest = Some(i as u64 * cs);
        if off.saturating_add(cs) > size {
            r.add_with(Severity::Corruption, 1, || finding(p, Severity::Corruption, "cluster-outside", Parallels::entry_at(i as u64), 4, guest, format!(
                "cluster {} is outside the image: it names byte {:#x}, past the end of the file ({} bytes)", i, off, size)));
            continue;
        }
        high = high.max(off);
    }
    let image_end = if high == 0 { data_end.saturating_mul(512) } else { high + cs };
    // The Format Extension and its bitmap clusters are in use although no BAT entry names
    // them. QEMU's check counts them as leaked (and a repair would cut them off); we do not.
    let ext_end = p.ext.iter().flat_map(|x| {
        let bitmaps = x.features.iter().filter_map(|f| f.bitmap.as_ref()).flat_map(|b| b.l1.iter().filter(|&&e| e > 1).map(|&e| e.saturating_mul(512)));
        core::iter::once(x.offset).chain(bitmaps.collect::<alloc::vec::Vec<_>>())
    }).map(|o| o.saturating_add(cs)).filter(|&e| e <= size).max().unwrap_or(0);
    if ext_end > image_end {
        r.add(finding(p, Severity::Info, "extension-after-data", image_end, ext_end - image_end, None, format!(
            "the Format Extension occupies the {} bytes after the last data cluster; qemu-img check counts them as leaked, and repairing leaks would cut the extension off",
            ext_end - image_end)));
    }
    let used_end = image_end.max(ext_end);
    if size > used_end {
        let n = (size - used_end).div_ceil(cs);
        r.leaks += n;
        r.add(finding(p, Severity::Leak, "leaked-space", used_end, size - used_end, None, format!(
            "{} bytes after the last cluster ({} cluster{}) are not used by any BAT entry", size - used_end, n, if n == 1 { "" } else { "s" })));
    }
    // Shared clusters, clusters over the header or BAT, misaligned clusters.
    let data_start = p.data_start * 512;
    let nclusters = image_end.saturating_sub(data_start).div_ceil(cs);
    if nclusters.div_ceil(8) > limits::MAX_TABLE_BYTES {
        r.add(finding(p, Severity::Warning, "check-limit", HEADER_BYTES as u64, bat_bytes, None, format!(
            "{} clusters are too many to check for shared clusters within the limits", nclusters)));
    } else {
        let mut used = vec![0u64; nclusters.div_ceil(64) as usize];
        for (i, &e) in p.bat.iter().enumerate() {
            let Some(off) = p.host(e).filter(|&o| e != 0 && o.saturating_add(cs) <= size) else { continue };
            let at = Parallels::entry_at(i as u64);
            let guest = Some(i as u64 * cs);
            if off < data_start {
                r.add_with(Severity::Corruption, 1, || finding(p, Severity::Corruption, "cluster-in-metadata", at, 4, guest, format!(
                    "cluster {} names byte {:#x}, inside the header and BAT (the data area starts at {:#x})", i, off, data_start)));
                continue;
            }
            if !(off - data_start).is_multiple_of(cs) {
                r.add_with(Severity::Warning, 1, || finding(p, Severity::Warning, "cluster-misaligned", at, 4, guest, format!(
                    "cluster {} at {:#x} is not aligned to clusters from the data area's start", i, off)));
            }
            let c = (off - data_start) / cs;
            let (w, b) = ((c / 64) as usize, c % 64);
            if w >= used.len() {
                continue;
            }
            if used[w] >> b & 1 == 1 {
                r.add_with(Severity::Corruption, 1, || finding(p, Severity::Corruption, "cluster-shared", at, 4, guest, format!(
                    "cluster {} names byte {:#x}, which another BAT entry names too: writing one changes the other", i, off)));
            }
            used[w] |= 1 << b;
        }
    }
    // Statistics over the clusters inside the image.
    r.total_clusters = p.bat.len() as u64;
    let mut prev = 0u64;
    for &e in &p.bat {
        let off = p.host(e).unwrap_or(u64::MAX);
        if e == 0 || off.saturating_add(cs) > image_end {
            prev = 0;
            continue;
        }
        if prev != 0 && prev + cs != off {
            r.fragmented_clusters += 1;
        }
        prev = off;
        r.allocated_clusters += 1;
    }
    if let Some(x) = &p.ext {
        for (offset, message) in &x.problems {
            r.add(finding(p, Severity::Corruption, "format-extension", *offset, 0, None, format!("{}; QEMU refuses to open the image read-only", message)));
        }
        for b in x.features.iter().filter_map(|f| f.bitmap.as_ref()) {
            if !b.complete {
                r.add(finding(p, Severity::Corruption, "bitmap-cluster", b.offset.saturating_add(32), b.l1.len() as u64 * 8, None, format!(
                    "dirty bitmap {}: some of its clusters lie past the end of the file", b.id_text())));
            }
        }
    }
    Ok(r)
}
