//! QED consistency check, as QEMU's block/qed-check.c does it: every table and data
//! cluster referenced once, every offset valid, unreferenced clusters counted as leaks.
//! One deliberate difference: QEMU's qed_bytes_to_clusters divides by cluster_size - 1,
//! which invents leaks past 4095 clusters at 4 KiB; we count clusters as offset / size.
use alloc::{format, string::String, vec, vec::Vec};

use super::{Qed, ZERO_CLUSTER};
use crate::error::{Error, Result};
use crate::limits;
use crate::formats::tables;
use crate::model::{CheckResult, Finding, Severity};

struct Used {
    bits: Vec<u64>,
    cluster: u64,
}

impl Used {
    fn new(clusters: u64, cluster: u64) -> Result<Used> {
        let words = clusters.div_ceil(64);
        if words * 8 > limits::MAX_TABLE_BYTES {
            return Err(Error::Limit { what: "cluster usage bitmap", needed: words * 8, limit: limits::MAX_TABLE_BYTES });
        }
        Ok(Used { bits: vec![0; words as usize], cluster })
    }
    /// Mark `n` clusters from `offset` (all inside the file); returns how many of them
    /// were already in use (QEMU counts one corruption for each).
    fn mark(&mut self, offset: u64, n: u64) -> u64 {
        let mut reused = 0;
        for c in offset / self.cluster..offset / self.cluster + n {
            let (w, b) = ((c / 64) as usize, c % 64);
            reused += (self.bits[w] >> b) & 1;
            self.bits[w] |= 1 << b;
        }
        reused
    }
    fn is_used(&self, c: u64) -> bool {
        self.bits[(c / 64) as usize] & (1 << (c % 64)) != 0
    }
}

fn finding(q: &Qed, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: String) -> Finding {
    Finding { severity, code, file: q.name.clone(), offset: Some(offset), length, guest, message }
}

pub(super) fn run(q: &Qed) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let cluster = q.cluster;
    let nclusters = q.file_size / cluster;
    r.total_clusters = q.info.virtual_size.div_ceil(cluster);
    if q.info.dirty {
        r.add(finding(q, Severity::Info, "need-check", 16, 8, None, String::from(
            "NEED_CHECK is set: the image was not closed cleanly. QEMU checks it when it next opens it read-write.")));
    }
    if q.header.table_size.get() == 1 {
        r.add(finding(q, Severity::Warning, "qemu-refuses-table-size-1", 8, 4, None, String::from(
            "table_size is 1: QEMU cannot open this image (\"QED table offset is invalid\"), because its overflow check \
             counts a one-cluster table as wrapping around. The layout is valid and diskscope reads it.")));
    }
    if q.file.size() % cluster != 0 {
        r.add(finding(q, Severity::Info, "file-size-unaligned", q.file_size, q.file.size() - q.file_size, None, format!(
            "the file ends {} bytes into a cluster; QEMU ignores the partial cluster", q.file.size() - q.file_size)));
    }
    let mut used = Used::new(nclusters, cluster)?;
    let table_clusters = q.header.table_size.get() as u64;
    let l1_offset = q.header.l1_table_offset.get();
    used.mark(l1_offset, table_clusters);

    // QEMU walks the whole L1 table, not only the entries that cover the disk.
    let l1 = q.read_table(l1_offset, 0, q.entries, "L1 table")?;
    let mut ranges: Vec<(u64, u64)> = l1.iter().filter(|&&o| o != 0 && q.valid_table(o)).map(|&o| (o, q.table_bytes())).collect();
    for (i, &l2) in l1.iter().enumerate() {
        if l2 == 0 {
            continue;
        }
        let entry_at = l1_offset + i as u64 * 8;
        let guest = (i as u64).checked_mul(q.l2_cover()).filter(|g| *g < q.info.virtual_size);
        if !q.valid_table(l2) {
            r.add_with(Severity::Corruption, 1, || finding(q, Severity::Corruption, "l1-entry-invalid", entry_at, 8, guest, format!(
                "L1 entry {} points to {:#x}, which is not a cluster-aligned L2 table inside the file", i, l2)));
            continue;
        }
        let reused = used.mark(l2, table_clusters);
        if reused > 0 {
            r.add_counted(finding(q, Severity::Corruption, "l2-table-shared", entry_at, 8, guest, format!(
                "L1 entry {} points to an L2 table at {:#x}; {} of its {} clusters are already in use by another table or data",
                i, l2, reused, table_clusters)), reused);
            continue;
        }
        // Prefetch the next batch of L2 tables when we reach one that is not cached.
        tables::prefetch_pending(&*q.file, &mut ranges, l2);
        let table = match q.read_table(l2, 0, q.entries, "L2 table") {
            Ok(t) => t,
            Err(e) => {
                r.check_errors += 1;
                r.add(finding(q, Severity::Corruption, "l2-read-failed", l2, q.table_bytes(), guest, format!("reading the L2 table failed: {}", e)));
                continue;
            }
        };
        // Fragmentation is counted within each table, as QEMU does.
        let mut last_offset = 0u64;
        for (k, &e) in table.iter().enumerate() {
            if e == 0 || e == ZERO_CLUSTER {
                continue;
            }
            r.allocated_clusters += 1;
            if last_offset != 0 && last_offset.wrapping_add(cluster) != e {
                r.fragmented_clusters += 1;
            }
            last_offset = e;
            let at = l2 + k as u64 * 8;
            let g = guest.map(|g| g + k as u64 * cluster);
            if !q.valid_cluster(e) {
                r.add_with(Severity::Corruption, 1, || finding(q, Severity::Corruption, "l2-entry-invalid", at, 8, g, format!(
                    "L2 entry points to {:#x}, which is not a cluster-aligned offset inside the file's data area", e)));
            } else if used.mark(e, 1) > 0 {
                r.add_with(Severity::Corruption, 1, || finding(q, Severity::Corruption, "cluster-shared", at, 8, g, format!(
                    "the data cluster at {:#x} is referenced more than once", e)));
            }
        }
    }
    // Like QEMU, count leaks only when every table could be read.
    if r.check_errors == 0 {
        let first = q.header.header_size.get() as u64;
        let mut c = first;
        while c < nclusters {
            if used.is_used(c) {
                c += 1;
                continue;
            }
            let run_start = c;
            while c < nclusters && !used.is_used(c) {
                c += 1;
            }
            let n = c - run_start;
            r.leaks += n;
            r.add(finding(q, Severity::Leak, "leaked-clusters", run_start * cluster, n * cluster, None, format!(
                "{} cluster{} at {:#x} {} not referenced by any table: space the file holds but does not use",
                n, if n == 1 { "" } else { "s" }, run_start * cluster, if n == 1 { "is" } else { "are" })));
        }
    }
    Ok(r)
}
