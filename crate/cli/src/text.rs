//! What the CLI prints: plain text for people, JSON in qemu-img's shapes for tools.
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use diskscope_core::map::MapEntry;
use diskscope_core::report::{LayerReport, Report};
use diskscope_core::{CheckResult, LayoutStatus, Severity};

fn layer(out: &mut dyn Write, l: &LayerReport, indent: &str) -> Result<()> {
    let status = match l.layout {
        LayoutStatus::Confirmed => "layout confirmed from published source",
        LayoutStatus::Reconstructed => "layout RECONSTRUCTED from a published description, not from source code",
    };
    writeln!(out, "{indent}image: {}", l.filename)?;
    writeln!(out, "{indent}file format: {} ({}; {})", l.format, l.variant, status)?;
    writeln!(out, "{indent}virtual size: {} ({} bytes)", human(l.virtual_size), l.virtual_size)?;
    writeln!(out, "{indent}file size: {} ({} bytes)", human(l.file_size), l.file_size)?;
    writeln!(out, "{indent}cluster_size: {}", l.cluster_size)?;
    if let Some(b) = &l.backing_filename {
        writeln!(out, "{indent}backing file: {}", b)?;
        if let Some(f) = &l.backing_filename_format {
            writeln!(out, "{indent}backing file format: {}", f)?;
        }
    }
    for c in &l.companions {
        match &c.found {
            Some(path) => writeln!(out, "{indent}{}: {} (found: {})", c.role, c.name, path)?,
            None => writeln!(out, "{indent}{}: {} — MISSING: put it beside the image to read the data it holds", c.role, c.name)?,
        }
    }
    if l.dirty_flag {
        writeln!(out, "{indent}dirty: the image was not closed cleanly")?;
    }
    if !l.records.is_empty() {
        writeln!(out, "{indent}journal/log records: {}", l.records.len())?;
        for r in l.records.iter().take(200) {
            let state = if r.stale { "stale" } else if r.applied { "applied" } else { "pending" };
            let fields: Vec<String> = r.fields.iter().map(|(k, v)| format!("{}={}", k, v)).collect();
            writeln!(out, "{indent}  @{:<10} {:<8} {:<7} {} {}", r.offset, r.kind, state, fields.join(" "), r.note)?;
        }
        if l.records.len() > 200 {
            writeln!(out, "{indent}  … {} more (see --json)", l.records.len() - 200)?;
        }
    }
    if !l.header_fields.is_empty() {
        writeln!(out, "{indent}header:")?;
        writeln!(out, "{indent}  {:>8} {:>5}  {:<20} {:<28} {}", "offset", "size", "field", "value", "raw bytes")?;
        for f in &l.header_fields {
            let raw: String = f.raw.iter().take(16).map(|b| format!("{:02x}", b)).collect::<Vec<_>>().join(" ");
            let more = if f.raw.len() > 16 { " …" } else { "" };
            writeln!(out, "{indent}  {:>8} {:>5}  {:<20} {:<28} {}{}", f.offset, f.size, f.name, f.value, raw, more)?;
            writeln!(out, "{indent}  {:>8} {:>5}  {:<20} ↳ {}", "", "", "", f.note)?;
        }
    }
    Ok(())
}

pub fn info(out: &mut dyn Write, r: &Report) -> Result<()> {
    layer(out, &r.top, "")?;
    for (i, l) in r.backing_chain.iter().enumerate() {
        writeln!(out, "\nbacking file {} of the chain:", i + 1)?;
        layer(out, l, "  ")?;
    }
    if let Some(b) = &r.chain_break {
        writeln!(out, "\nchain: {}", b.finding().message)?;
    }
    for f in &r.chain_findings {
        writeln!(out, "chain: {}", f.message)?;
    }
    Ok(())
}

pub fn human(v: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut x = v as f64;
    let mut i = 0;
    while x >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{} B", v) } else { format!("{:.3} {}", x, units[i]).replace(".000 ", " ") }
}

/// The exact text of `qemu-img map --output=json`: one run per line, qemu's spacing, and
/// our two extra keys only where qemu-img would have failed instead.
/// `diskscope map`'s output, written run by run as the walk yields them: a hostile image's
/// map can have hundreds of millions of runs (a 2 TiB VHD whose blocks all share one bitmap
/// held 24 GB when they were collected first). Text, or qemu-img map --output=json's schema.
pub struct MapPrinter<'a> {
    out: &'a mut dyn Write,
    json: bool,
    name: &'a dyn Fn(usize, u16) -> String,
    runs: u64,
}

impl<'a> MapPrinter<'a> {
    pub fn start(out: &'a mut dyn Write, json: bool, name: &'a dyn Fn(usize, u16) -> String) -> std::io::Result<Self> {
        if json {
            write!(out, "[")?;
        } else {
            writeln!(out, "{:<18} {:<18} {:<18} {:<18} {}", "guest offset", "length", "reads as", "host offset", "file")?;
        }
        Ok(MapPrinter { out, json, name, runs: 0 })
    }

    pub fn run(&mut self, e: &MapEntry) -> std::io::Result<()> {
        self.runs += 1;
        if self.json { self.json_run(e) } else { self.text_run(e) }
    }

    pub fn finish(self) -> std::io::Result<()> {
        if self.json {
            writeln!(self.out, "]")?;
        }
        Ok(())
    }

    fn json_run(&mut self, e: &MapEntry) -> std::io::Result<()> {
        let out = &mut *self.out;
        if self.runs > 1 {
            write!(out, ",\n")?;
        }
        write!(
            out,
            "{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"present\": {}, \"zero\": {}, \"data\": {}, \"compressed\": {}",
            e.start, e.length, e.depth, e.present, e.zero, e.data, e.compressed
        )?;
        if let Some(o) = e.offset {
            write!(out, ", \"offset\": {}", o)?;
        }
        if let Some(at) = e.invalid {
            write!(out, ", \"invalid\": {}", at)?;
        }
        if e.missing {
            write!(out, ", \"missing\": true")?;
        }
        write!(out, "}}")
    }

    fn text_run(&mut self, e: &MapEntry) -> std::io::Result<()> {
        let what = if let Some(at) = e.invalid {
            format!("INVALID (entry at byte {})", at)
        } else if e.missing {
            if e.present { "missing file".into() } else { "missing backing".into() }
        } else if e.compressed {
            "compressed".into()
        } else if e.data && !e.zero {
            "data".into()
        } else if e.present {
            "zeros".into()
        } else {
            "unallocated (zeros)".into()
        };
        let host = e.offset.map(|o| format!("{:#x}", o)).unwrap_or_default();
        let file = if e.present || e.data { (self.name)(e.depth as usize, e.file) } else { String::new() };
        writeln!(self.out, "{:<18} {:<18} {:<18} {:<18} {}", format!("{:#x}", e.start), format!("{:#x}", e.length), what, host, file)
    }
}

pub fn check_json(out: &mut dyn Write, image: &Path, format: &str, r: &CheckResult) -> Result<()> {
    let mut v = serde_json::json!({
        "filename": image.display().to_string(),
        "format": format,
        "check-errors": r.check_errors,
        "total-clusters": r.total_clusters,
        "allocated-clusters": r.allocated_clusters,
        "fragmented-clusters": r.fragmented_clusters,
        "findings": r.findings,
    });
    // qemu-img omits zero counts of these two.
    if r.corruptions > 0 {
        v["corruptions"] = r.corruptions.into();
    }
    if r.leaks > 0 {
        v["leaks"] = r.leaks.into();
    }
    // qcow2's extra keys, left out when zero as qemu-img does.
    if let Some(end) = r.image_end_offset.filter(|&e| e > 0) {
        v["image-end-offset"] = end.into();
    }
    if r.compressed_clusters > 0 {
        v["compressed-clusters"] = r.compressed_clusters.into();
    }
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)?;
    Ok(())
}

pub fn check(out: &mut dyn Write, r: &CheckResult) -> Result<()> {
    for f in &r.findings {
        let sev = match f.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Leak => "leak",
            Severity::Corruption => "ERROR",
        };
        let at = f.offset.map(|o| format!(" at byte {:#x}", o)).unwrap_or_default();
        writeln!(out, "{}: {}{}: {}", sev, f.file, at, f.message)?;
    }
    if r.findings_dropped > 0 {
        writeln!(out, "({} more findings not listed)", r.findings_dropped)?;
    }
    if r.corruptions > 0 {
        writeln!(out, "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.", r.corruptions)?;
    }
    if r.leaks > 0 {
        writeln!(out, "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.", r.leaks)?;
    }
    if r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0 {
        writeln!(out, "No errors were found on the image.")?;
    }
    if r.total_clusters > 0 {
        writeln!(out, "{}/{} = {:.2}% allocated, {:.2}% fragmented",
            r.allocated_clusters, r.total_clusters,
            r.allocated_clusters as f64 * 100.0 / r.total_clusters as f64,
            if r.allocated_clusters > 0 { r.fragmented_clusters as f64 * 100.0 / r.allocated_clusters as f64 } else { 0.0 })?;
    }
    Ok(())
}
