//! Format-specific views of the open session: the host-file cluster map (qcow2), block
//! versions and their histogram (GOW3), the table of map entries, and the delta between a
//! master and a local image. Each export answers about the session `open` made.
use diskscope_core::delta;
use diskscope_core::formats;
use diskscope_core::model::{Extent, Kind, RegionKind};
use diskscope_core::Image;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::{js_error, js_file, ok_js, plain_error, set, with_session, Dropped, DroppedResolver, Probed};

/// Dropped images other than `top` that keep block versions (GOW3): delta candidates.
pub(crate) fn versioned_images(files: &[Dropped], probed: &[Probed], top: usize) -> Vec<String> {
    (0..files.len())
        .filter(|&i| i != top && matches!(probed[i], Probed::Image { versions: true, .. }))
        .map(|i| files[i].name.clone())
        .collect()
}

fn u64_array(v: &[u64]) -> js_sys::Array {
    let a = js_sys::Array::new();
    for x in v {
        a.push(&JsValue::from_f64(*x as f64));
    }
    a
}

/// The top image's host-file usage: `{cellSize, fileSize, classes: Uint8Array, legend:
/// string[], totals: number[]}`, or null for formats that do not account for host clusters.
#[wasm_bindgen]
pub fn host_map(max_cells: f64) -> Result<JsValue, JsValue> {
    with_session(|s| {
        let Some(h) = s.chain.top().host_map(max_cells.max(1.0) as u64).map_err(js_error)? else {
            return Ok(JsValue::NULL);
        };
        let out = js_sys::Object::new();
        set(&out, "cellSize", h.cell_size as f64);
        set(&out, "fileSize", h.file_size as f64);
        set(&out, "classes", js_sys::Uint8Array::from(&h.classes[..]));
        let legend = js_sys::Array::new();
        for l in &h.legend {
            legend.push(&JsValue::from_str(l));
        }
        set(&out, "legend", legend);
        set(&out, "totals", u64_array(&h.totals));
        Ok(out.into())
    })
}

/// Blocks handled per step when scanning versions.
const STEP: u64 = 1 << 20;

/// Block versions drawn as cells of `cell_size` guest bytes (a multiple of the block size,
/// as `cells` chose it): `{granularity, blocks, maxVersion, cells: Uint32Array (highest
/// version in each cell), histogram: {versions: [{version, blocks, bytes}]}}`, or null.
#[wasm_bindgen]
pub fn versions(cell_size: f64) -> Result<JsValue, JsValue> {
    with_session(|s| {
        let image = s.chain.top();
        let Some(v0) = image.block_versions(0, 0).map_err(js_error)? else {
            return Ok(JsValue::NULL);
        };
        let size = image.info().virtual_size;
        let g = v0.granularity.max(1);
        let cell = (cell_size.max(1.0) as u64).max(g);
        let blocks = size.div_ceil(g);
        let mut cells = vec![0u32; size.div_ceil(cell) as usize];
        let mut first = 0;
        let mut max = 0u32;
        while first < blocks {
            let n = (blocks - first).min(STEP);
            let vs = image.block_versions(first, n).map_err(js_error)?.map(|v| v.versions).unwrap_or_default();
            for (k, v) in vs.iter().enumerate() {
                let c = ((first + k as u64) * g / cell) as usize;
                if let Some(x) = cells.get_mut(c) {
                    *x = (*x).max(*v);
                }
                max = max.max(*v);
            }
            first += n;
        }
        let hist = delta::histogram(image).map_err(js_error)?;
        let out = js_sys::Object::new();
        set(&out, "granularity", g as f64);
        set(&out, "blocks", blocks as f64);
        set(&out, "maxVersion", max);
        set(&out, "cellSize", cell as f64);
        set(&out, "cells", js_sys::Uint32Array::from(&cells[..]));
        set(&out, "histogram", ok_js(&hist)?);
        Ok(out.into())
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    block: f64,
    /// Guest byte offset of the block.
    guest: f64,
    /// Data block number, when the block is stored in the image file.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_block: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_offset: Option<f64>,
    /// "data", "unallocated", "zero", "compressed", "invalid", "missing", "computed".
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entries {
    granularity: f64,
    blocks: f64,
    rows: Vec<Entry>,
    /// Block to continue the scan from (None: the end was reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<f64>,
    /// Blocks scanned to find these rows.
    scanned: f64,
}

/// Where the data area of the image starts, for numbering data blocks: the "data blocks"
/// region, else the end of the last table (rounded to 512 unless the variant is GOW1).
fn data_start(image: &dyn Image) -> u64 {
    let regions = image.regions().unwrap_or_default();
    if let Some(r) = regions.iter().find(|r| r.kind == RegionKind::Data) {
        return r.offset;
    }
    let end = regions.iter().map(|r| r.offset + r.length).max().unwrap_or(0);
    if image.info().variant.contains('1') {
        end
    } else {
        end.next_multiple_of(512)
    }
}

/// Rows of the top image's map table (logical block, data block, file offset, version),
/// from block `from`, at most `limit` of them, keeping only rows that match: `mode` is
/// "all", "allocated", "data-block" (data block == value), "offset" (the block's bytes
/// in the file cover byte `value`), "version" (version == value) or "block" (from that
/// logical block on). Scans at most 2^22 blocks a call; `next` says where to continue.
#[wasm_bindgen]
pub fn entries(from: f64, limit: u32, mode: &str, value: f64) -> Result<JsValue, JsValue> {
    with_session(|s| {
        let image = s.chain.top();
        let size = image.info().virtual_size;
        let versions0 = image.block_versions(0, 0).map_err(js_error)?;
        let g = versions0.as_ref().map(|v| v.granularity).unwrap_or(image.info().cluster_size).max(512);
        let blocks = size.div_ceil(g);
        let d0 = data_start(image);
        let value_u = value.max(0.0) as u64;
        let mut from = from.max(0.0) as u64;
        if mode == "block" {
            from = from.max(value_u);
        }
        let limit = limit.clamp(1, 1000) as usize;
        let mut rows = Vec::new();
        let mut block = from;
        let scan_end = blocks.min(from.saturating_add(1 << 22));
        let mut extents: Vec<Extent> = Vec::new();
        while block < scan_end && rows.len() < limit {
            let n = (scan_end - block).min(STEP / 4);
            let vs = match versions0 {
                Some(_) => image.block_versions(block, n).map_err(js_error)?.map(|v| v.versions),
                None => None,
            };
            extents.clear();
            let start = block * g;
            let end = ((block + n) * g).min(size);
            image.map(start, end - start, &mut extents).map_err(js_error)?;
            let mut ei = 0;
            for k in 0..n {
                let b = block + k;
                let gs = b * g;
                while ei + 1 < extents.len() && extents[ei].start + extents[ei].length <= gs {
                    ei += 1;
                }
                let e = extents.get(ei);
                let (state, off) = match e.map(|e| e.kind) {
                    Some(Kind::Data { file: 0, offset }) => ("data", Some(offset + (gs - e.unwrap().start))),
                    Some(Kind::Data { .. }) => ("data", None),
                    Some(Kind::Hole { .. }) | Some(Kind::Zero) => ("zero", None),
                    Some(Kind::Compressed { .. }) => ("compressed", None),
                    Some(Kind::Invalid { .. }) => ("invalid", None),
                    Some(Kind::Missing { .. }) => ("missing", None),
                    Some(Kind::Computed { .. }) => ("computed", None),
                    Some(Kind::Unallocated) | None => ("unallocated", None),
                };
                let version = vs.as_ref().and_then(|v| v.get(k as usize).copied());
                let data_block = off.filter(|&o| o >= d0).map(|o| (o - d0) / g);
                let keep = match mode {
                    "allocated" => state != "unallocated",
                    "data-block" => data_block == Some(value_u),
                    "offset" => off.is_some_and(|o| value_u >= o && value_u < o + g),
                    "version" => version == Some(value as u32),
                    _ => true,
                };
                if keep {
                    rows.push(Entry {
                        block: b as f64,
                        guest: gs as f64,
                        data_block: data_block.map(|x| x as f64),
                        file_offset: off.map(|x| x as f64),
                        state,
                        version,
                    });
                    if rows.len() >= limit {
                        block = b + 1;
                        break;
                    }
                }
                if k + 1 == n {
                    block = b + 1;
                }
            }
        }
        let next = if block < blocks { Some(block as f64) } else { None };
        ok_js(&Entries { granularity: g as f64, blocks: blocks as f64, rows, next, scanned: (block - from) as f64 })
    })
}

fn open_single(files: &[Dropped], name: &str) -> Result<Box<dyn Image>, JsValue> {
    let i = files
        .iter()
        .position(|f| f.name == name)
        .ok_or_else(|| plain_error("usage", format!("{} was not among the dropped files", name)))?;
    let f = js_file(files, i);
    formats::open(f, &files[i].name, None, false, &DroppedResolver(files), &Default::default()).map_err(js_error)
}

/// Delta between two dropped images that keep block versions (GOW3): `master` and `local`
/// name dropped files. Returns `{delta (as `diskscope delta --json`), cellSize, cells:
/// Uint8Array}` where a cell is 1 when some block in it is newer on the master, 2 when
/// newer on the local side only, 3 when allocated on one side only, else 0.
#[wasm_bindgen]
pub fn delta(master: &str, local: &str, max_cells: f64) -> Result<JsValue, JsValue> {
    with_session(|s| {
        let m = open_single(&s.files, master)?;
        let l = open_single(&s.files, local)?;
        let d = delta::delta(&*m, &*l).map_err(|e| match e {
            delta::DeltaError::Read(e) => js_error(e),
            other => plain_error("delta", other.to_string()),
        })?;
        let size = d.virtual_size;
        let mut cell = d.granularity.max(1);
        while size.div_ceil(cell) > max_cells.max(1.0) as u64 {
            cell *= 2;
        }
        let mut cells = vec![0u8; size.div_ceil(cell) as usize];
        let mut paint = |set: &delta::BlockSet, class: u8| {
            for r in &set.runs {
                let a = (r.start / cell) as usize;
                let len = cells.len();
                let b = ((r.start + r.length).div_ceil(cell) as usize).min(len);
                for c in cells[a.min(b)..b].iter_mut() {
                    if *c == 0 || class < *c {
                        *c = class;
                    }
                }
            }
        };
        paint(&d.master_only, 3);
        paint(&d.local_only, 3);
        paint(&d.local_newer, 2);
        paint(&d.master_newer, 1);
        let out = js_sys::Object::new();
        set(&out, "delta", ok_js(&d)?);
        set(&out, "cellSize", cell as f64);
        set(&out, "cellCount", cells.len() as f64);
        set(&out, "classes", js_sys::Uint8Array::from(&cells[..]));
        set(&out, "master", master);
        set(&out, "local", local);
        Ok(out.into())
    })
}
