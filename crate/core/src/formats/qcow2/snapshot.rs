//! The qcow2 snapshot table: variable-length entries from `snapshots_offset`, each a saved
//! L1 table with an ID, a name, dates and optional extra data (qcow2.rst "Snapshots").
use alloc::{format, string::String, vec::Vec};

use super::header::{Header, MAX_L1_BYTES};
use crate::formats::bytes::{be16, be32, be64};
use crate::io::{read_exact_at, ReadAt};
use crate::model::Snapshot;

/// QEMU's bounds: extra data per entry, and the whole table.
const MAX_EXTRA: u64 = 1024;
const MAX_TABLE: u64 = 64 << 20;

/// The table as read: the entries that parsed, where the table ends, and what was wrong.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub entries: Vec<Snapshot>,
    /// Byte length of the entries read (the table's extent in the file).
    pub bytes: u64,
    /// Problems, for check and for a snapshot view that cannot be opened: (offset, message).
    pub problems: Vec<(u64, String)>,
}

pub fn read(file: &dyn ReadAt, h: &Header) -> Table {
    let mut t = Table::default();
    let n = h.nb_snapshots as u64;
    if n == 0 {
        return t;
    }
    // One coalesced read for a typical table (entries are about 64 bytes plus names).
    file.prefetch(&mut [(h.snapshots_offset, (n * 128).min(MAX_TABLE).min(file.size().saturating_sub(h.snapshots_offset)))]);
    let mut at = h.snapshots_offset;
    for i in 0..n {
        let mut fixed = [0u8; 40];
        if let Err(e) = read_exact_at(file, at, &mut fixed, "snapshot table entry") {
            t.problems.push((at, format!("snapshot table entry {} cannot be read: {}", i, e)));
            break;
        }
        let id_len = be16(&fixed, 12) as u64;
        let name_len = be16(&fixed, 14) as u64;
        let extra_len = be32(&fixed, 36) as u64;
        if extra_len > MAX_EXTRA {
            t.problems.push((at + 36, format!("snapshot table entry {} has {} bytes of extra data; QEMU allows at most {}", i, extra_len, MAX_EXTRA)));
            break;
        }
        let var = extra_len + id_len + name_len;
        let len = (40 + var).next_multiple_of(8);
        if at - h.snapshots_offset + len > MAX_TABLE {
            t.problems.push((at, String::from("the snapshot table is larger than QEMU's 64 MiB limit")));
            break;
        }
        let mut rest = alloc::vec![0u8; var as usize];
        if let Err(e) = read_exact_at(file, at + 40, &mut rest, "snapshot table entry") {
            t.problems.push((at, format!("snapshot table entry {} cannot be read: {}", i, e)));
            break;
        }
        let extra = &rest[..extra_len as usize];
        let id = String::from_utf8_lossy(&rest[extra_len as usize..(extra_len + id_len) as usize]).into_owned();
        let name = String::from_utf8_lossy(&rest[(extra_len + id_len) as usize..]).into_owned();
        let vm_clock = be64(&fixed, 24);
        let icount = if extra.len() >= 24 { Some(be64(extra, 16)).filter(|&v| v != u64::MAX) } else { None };
        let sn = Snapshot {
            id,
            name,
            vm_state_size: if extra.len() >= 8 { be64(extra, 0) } else { be32(&fixed, 32) as u64 },
            date_sec: be32(&fixed, 16) as u64,
            date_nsec: be32(&fixed, 20),
            vm_clock_sec: vm_clock / 1_000_000_000,
            vm_clock_nsec: (vm_clock % 1_000_000_000) as u32,
            icount,
            virtual_size: (extra.len() >= 16).then(|| be64(extra, 8)),
            l1_table_offset: be64(&fixed, 0),
            l1_size: be32(&fixed, 8) as u64,
            offset: at,
        };
        if h.version >= 3 && extra.len() < 16 {
            t.problems.push((at + 36, format!("snapshot '{}' has {} bytes of extra data; version 3 requires at least 16 (VM state size and disk size)", sn.name, extra.len())));
        }
        if sn.l1_table_offset % h.cluster() != 0 {
            t.problems.push((at, format!("snapshot '{}' has its L1 table at {:#x}, which is not cluster-aligned", sn.name, sn.l1_table_offset)));
        }
        if sn.l1_size * 8 > MAX_L1_BYTES {
            t.problems.push((at + 8, format!("snapshot '{}' has an L1 table of {} entries, over QEMU's 32 MiB limit", sn.name, sn.l1_size)));
        }
        t.entries.push(sn);
        at += len;
    }
    t.bytes = at - h.snapshots_offset;
    t
}

/// Find a snapshot as `qemu-img convert -l` does: by ID first, then by name.
pub fn find<'a>(entries: &'a [Snapshot], key: &str) -> Option<(usize, &'a Snapshot)> {
    entries.iter().enumerate().find(|(_, s)| s.id == key).or_else(|| entries.iter().enumerate().find(|(_, s)| s.name == key))
}

/// "0000:00:00.000", as qemu-img prints a VM clock.
pub fn vm_clock(s: &Snapshot) -> String {
    let secs = s.vm_clock_sec;
    format!("{:04}:{:02}:{:02}.{:03}", secs / 3600, secs / 60 % 60, secs % 60, s.vm_clock_nsec / 1_000_000)
}
