//! The inspection of a chain as one serialisable value: what `diskscope info --json` prints
//! and what the page shows. Top-level names follow `qemu-img info --output=json`.
use alloc::{string::String, vec::Vec};

use crate::chain::{Chain, ChainBreak};
use crate::error::Result;
use crate::model::{Field, ImageInfo, LayoutStatus, Region};

#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct LayerReport {
    pub filename: String,
    pub format: &'static str,
    pub variant: String,
    pub layout: LayoutStatus,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub virtual_size: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub cluster_size: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub file_size: u64,
    pub dirty_flag: bool,
    pub companions: Vec<crate::model::Companion>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub backing_filename: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub backing_filename_format: Option<String>,
    pub header_fields: Vec<Field>,
    pub regions: Vec<Region>,
    /// Granularities to draw the map at besides the cluster (FVD blocks and chunks, cow bits).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub grids: Vec<crate::model::Grid>,
    /// Journal or log records (FVD's journal, VHDX's log), when the format keeps any.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub records: Vec<crate::model::Record>,
}

#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct Report {
    /// The top image's facts, at the top level as qemu-img info prints them.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub top: LayerReport,
    /// Where the backing file was found (qemu-img's name for it).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub full_backing_filename: Option<String>,
    /// Each backing file below the top, in chain order.
    pub backing_chain: Vec<LayerReport>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub chain_break: Option<ChainBreak>,
    /// Notes about the chain that do not break it.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub chain_findings: Vec<crate::model::Finding>,
}

impl LayerReport {
    fn new(name: &str, image: &dyn crate::Image) -> Result<LayerReport> {
        let ImageInfo { format, variant, layout, virtual_size, cluster_size, backing, dirty, companions } = image.info().clone();
        Ok(LayerReport {
            filename: String::from(name),
            format,
            variant,
            layout,
            virtual_size,
            cluster_size,
            file_size: image.file(0).map(|f| f.size()).unwrap_or(0),
            dirty_flag: dirty,
            companions,
            backing_filename: backing.as_ref().map(|b| b.name.clone()),
            backing_filename_format: backing.and_then(|b| b.format),
            header_fields: image.header_fields(),
            regions: image.regions()?,
            records: image.records(),
            grids: image.grids(),
        })
    }
}

impl Report {
    pub fn new(chain: &Chain) -> Result<Report> {
        let mut layers = chain.layers.iter().map(|l| LayerReport::new(&l.name, &*l.image)).collect::<Result<Vec<_>>>()?;
        let top = layers.remove(0);
        Ok(Report {
            top,
            full_backing_filename: layers.first().map(|l| l.filename.clone()),
            backing_chain: layers,
            chain_break: chain.broken.clone(),
            chain_findings: chain.findings.clone(),
        })
    }
}

/// `diskscope check --json` of one layer: qemu-img check's names, and the counts qemu-img
/// leaves out when zero left out too.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct CheckReport {
    pub filename: String,
    pub format: &'static str,
    pub check_errors: u64,
    pub total_clusters: u64,
    pub allocated_clusters: u64,
    pub fragmented_clusters: u64,
    pub findings: Vec<crate::model::Finding>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "is_zero"))]
    pub corruptions: u64,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "is_zero"))]
    pub leaks: u64,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_some_u64"))]
    pub image_end_offset: Option<u64>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "is_zero"))]
    pub compressed_clusters: u64,
    /// Findings past `limits::MAX_FINDINGS`, counted but not listed (not in qemu-img's schema).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "is_zero"))]
    pub findings_dropped: u64,
}

#[cfg(feature = "serde")]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[cfg(feature = "serde")]
fn ser_some_u64<S: serde::Serializer>(v: &Option<u64>, s: S) -> core::result::Result<S::Ok, S::Error> {
    crate::model::ser_u64(&v.unwrap_or(0), s)
}

impl CheckReport {
    pub fn new(filename: &str, format: &'static str, r: crate::model::CheckResult) -> CheckReport {
        CheckReport {
            filename: String::from(filename),
            format,
            check_errors: r.check_errors,
            total_clusters: r.total_clusters,
            allocated_clusters: r.allocated_clusters,
            fragmented_clusters: r.fragmented_clusters,
            findings: r.findings,
            corruptions: r.corruptions,
            leaks: r.leaks,
            image_end_offset: r.image_end_offset.filter(|&e| e > 0),
            compressed_clusters: r.compressed_clusters,
            findings_dropped: r.findings_dropped,
        }
    }
}

/// The check of one layer in a whole inspection: its result, or why it could not finish.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(untagged))]
pub enum LayerCheck {
    Done(CheckReport),
    Failed { filename: String, format: &'static str, error: String },
}

/// What `diskscope info --json` prints: the report, the block-version histogram and the
/// internal snapshots when the top image has them.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct InfoReport {
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub report: Report,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub version_histogram: Option<crate::delta::VersionHistogram>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub snapshots: Vec<crate::model::Snapshot>,
}

/// The whole inspection of a chain, as `diskscope report` prints it and the page downloads
/// it: `info` as `info --json`, `checks` as `check --json` of each layer (top first; the
/// top's includes a broken chain, as `check` does), `map` as `map --json`'s runs.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case"))]
pub struct Inspection {
    pub info: InfoReport,
    pub checks: Vec<LayerCheck>,
    pub map: Vec<crate::map::MapEntry>,
    /// Runs past `limits::MAX_REPORT_MAP_RUNS`, counted but not listed.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "is_zero"))]
    pub map_runs_dropped: u64,
    /// Why the map stops short (an encrypted image has no readable map); the header and
    /// checks are still worth having.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub map_error: Option<String>,
}

impl Inspection {
    /// `top_name` is how the top image is named in the output (the path the user gave).
    pub fn new(chain: &Chain, top_name: &str) -> Result<Inspection> {
        let mut report = Report::new(chain)?;
        report.top.filename = String::from(top_name);
        let version_histogram = crate::delta::histogram(chain.top())?;
        let snapshots = chain.top().snapshots();
        let checks = chain
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let name = if i == 0 { top_name } else { l.name.as_str() };
                let format = l.image.info().format;
                match l.image.check() {
                    Ok(mut r) => {
                        if let (0, Some(b)) = (i, &chain.broken) {
                            r.add(b.finding());
                        }
                        LayerCheck::Done(CheckReport::new(name, format, r))
                    }
                    Err(e) => LayerCheck::Failed { filename: String::from(name), format, error: alloc::format!("{}", e) },
                }
            })
            .collect();
        let mut map = Vec::new();
        let mut map_runs_dropped = 0;
        let walked = chain.for_each_entry(|e| {
            if map.len() < crate::limits::MAX_REPORT_MAP_RUNS {
                map.push(*e);
            } else {
                map_runs_dropped += 1;
            }
            Ok(())
        });
        let map_error = walked.err().map(|e| alloc::format!("{}", e));
        Ok(Inspection { info: InfoReport { report, version_histogram, snapshots }, checks, map, map_runs_dropped, map_error })
    }
}
