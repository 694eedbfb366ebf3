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
