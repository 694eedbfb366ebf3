//! Block versions on the command line: `diskscope delta MASTER LOCAL` (which blocks a local
//! copy must fetch from its master, seed 000's use case) and the version histogram that
//! `info` adds for images that stamp their blocks (GOW3).
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use diskscope_core::delta::{self, BlockSet, Delta, VersionHistogram};
use diskscope_core::report::Report;
use diskscope_core::Chain;
use serde::Serialize;

use crate::text::human;

/// Versions listed by the text histogram; JSON lists them all.
const MAX_TEXT_VERSIONS: usize = 64;
const BAR: usize = 40;

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct DeltaOut<'a> {
    master: String,
    local: String,
    #[serde(flatten)]
    delta: &'a Delta,
}

/// `diskscope delta`: the blocks newer on each side and the blocks stored on one side only.
pub fn run(out: &mut dyn Write, master_path: &Path, local_path: &Path, master: &Chain, local: &Chain, json: bool) -> Result<()> {
    let d = delta::delta(master.top(), local.top())
        .with_context(|| format!("no delta between '{}' and '{}'", master_path.display(), local_path.display()))?;
    if json {
        let o = DeltaOut { master: master_path.display().to_string(), local: local_path.display().to_string(), delta: &d };
        serde_json::to_writer_pretty(&mut *out, &o)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "master: {}", master_path.display())?;
    writeln!(out, "local:  {}", local_path.display())?;
    writeln!(out, "disk: {} ({} bytes), {} blocks of {}", human(d.virtual_size), d.virtual_size, d.blocks, human(d.granularity))?;
    set(out, "newer on the master (to fetch)", &d.master_newer)?;
    set(out, "newer on the local side", &d.local_newer)?;
    set(out, "stored on the master only", &d.master_only)?;
    set(out, "stored on the local side only", &d.local_only)?;
    Ok(())
}

fn set(out: &mut dyn Write, what: &str, s: &BlockSet) -> Result<()> {
    writeln!(out, "\n{}: {} block{}, {} ({} bytes)", what, s.blocks, if s.blocks == 1 { "" } else { "s" }, human(s.bytes), s.bytes)?;
    if s.blocks == 0 {
        return Ok(());
    }
    writeln!(out, "  {:<20} {:<18} {:<18} {:>8} {:>8}", "blocks", "guest offset", "length", "master", "local")?;
    for r in &s.runs {
        let blocks = if r.blocks == 1 { r.first_block.to_string() } else { format!("{}-{}", r.first_block, r.first_block + r.blocks - 1) };
        writeln!(out, "  {:<20} {:<18} {:<18} {:>8} {:>8}", blocks, format!("{:#x}", r.start), format!("{:#x}", r.length), r.master_version, r.local_version)?;
    }
    if s.runs_dropped > 0 {
        writeln!(out, "  ({} more runs not listed)", s.runs_dropped)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct InfoOut<'a> {
    #[serde(flatten)]
    report: &'a Report,
    #[serde(rename = "version-histogram", skip_serializing_if = "Option::is_none")]
    versions: Option<&'a VersionHistogram>,
}

/// `info --json`: the report, plus the version histogram when the image has one.
pub fn info_json(out: &mut dyn Write, report: &Report, versions: Option<&VersionHistogram>) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, &InfoOut { report, versions })?;
    writeln!(out)?;
    Ok(())
}

/// `info`: how many blocks carry each version, with a bar per version (0 = never written).
pub fn histogram(out: &mut dyn Write, h: Option<&VersionHistogram>) -> Result<()> {
    let Some(h) = h else {
        return Ok(());
    };
    writeln!(out, "block versions ({} blocks of {}):", h.blocks, human(h.granularity))?;
    writeln!(out, "  {:>10} {:>10} {:>14}", "version", "blocks", "size")?;
    let widest = h.versions.iter().filter(|v| v.version != 0).map(|v| v.blocks).max().unwrap_or(1).max(1);
    for v in h.versions.iter().take(MAX_TEXT_VERSIONS) {
        let bar = if v.version == 0 {
            String::from("(never written)")
        } else {
            "#".repeat(((v.blocks as u128 * BAR as u128).div_ceil(widest as u128)) as usize)
        };
        writeln!(out, "  {:>10} {:>10} {:>14} {}", v.version, v.blocks, human(v.bytes), bar)?;
    }
    if h.versions.len() > MAX_TEXT_VERSIONS {
        writeln!(out, "  ({} more versions; --json lists them all)", h.versions.len() - MAX_TEXT_VERSIONS)?;
    }
    Ok(())
}
