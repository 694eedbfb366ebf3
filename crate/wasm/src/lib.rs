//! diskscope's core inside a browser worker.
//!
//! The page posts the dropped `File`s to a classic dedicated worker; the worker keeps them
//! and defines `ds_read(file, offset, buf)` over `FileReaderSync`. Rust only ever sees file
//! indexes, names and sizes. One session (the chain of the image being inspected) lives
//! here at a time; every export answers about it.
//!
//! Errors never cross as panics: each export returns `{kind, message, offset?, file?}`
//! (message = the core's Display text) as its `Err`, which wasm-bindgen throws in JS.
use std::cell::RefCell;
use std::sync::Arc;

use diskscope_core::chain::{Chain, ChainBreak, Resolver};
use diskscope_core::convert::Part;
use diskscope_core::error::Error;
use diskscope_core::map::{class, class_of, MapEntry};
use diskscope_core::report::Report;
use diskscope_core::{formats, ser_u64, CheckResult, Finding, ReadAt};
use serde::Serialize;
use wasm_bindgen::prelude::*;

mod inspect;
mod export;
mod demo;
mod views;

#[wasm_bindgen]
extern "C" {
    /// Fill `buf` with the bytes of dropped file `file` from `offset`; throws if it cannot.
    /// Defined by the worker (global function) over `FileReaderSync`.
    #[wasm_bindgen(catch, js_name = ds_read)]
    fn ds_read(file: u32, offset: f64, buf: &mut [u8]) -> Result<(), JsValue>;

    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Runs when the module is instantiated: panics are logged before the trap reaches JS.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error(&format!("diskscope panicked: {}", info));
    }));
}

// ---------------------------------------------------------------------------------------
// Files

/// A dropped file as Rust knows it: its index among the dropped files and its size.
struct JsFile {
    index: u32,
    size: u64,
}

impl ReadAt for JsFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> diskscope_core::error::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(Error::PastEnd { what: "read", offset, len, file_size: self.size });
        }
        ds_read(self.index, offset as f64, buf).map_err(|e| Error::Io { offset, len, message: js_message(&e) })
    }
}

fn js_message(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    js_sys::Reflect::get(e, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| String::from("the browser could not read the file"))
}

#[derive(Clone)]
struct Dropped {
    name: String,
    size: u64,
}

/// The part of a path after its last `/` or `\`: a header may name `../images/base.raw`,
/// the user drops `base.raw`.
fn basename(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// Index of the dropped file a header's name refers to: same base name, exactly, or else
/// ignoring case.
fn find_file(files: &[Dropped], name: &str) -> Option<usize> {
    let base = basename(name);
    files.iter().position(|f| f.name == base).or_else(|| {
        let lower = base.to_lowercase();
        files.iter().position(|f| f.name.to_lowercase() == lower)
    })
}

fn js_file(files: &[Dropped], index: usize) -> Arc<dyn ReadAt> {
    Arc::new(JsFile { index: index as u32, size: files[index].size })
}

struct DroppedResolver<'a>(&'a [Dropped]);

impl Resolver for DroppedResolver<'_> {
    fn resolve(&self, name: &str, _by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        let i = find_file(self.0, name)?;
        Some((self.0[i].name.clone(), js_file(self.0, i)))
    }

    /// Every dropped file may be the parent an image names only by its UUID (VDI, VHD).
    fn candidates(&self, _by: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        (0..self.0.len()).map(|i| (self.0[i].name.clone(), js_file(self.0, i))).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Errors

#[derive(Serialize)]
struct ErrorInfo {
    kind: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt")]
    offset: Option<u64>,
    /// The file the error is about, when it names one (a missing backing file).
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

fn ser_opt<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => ser_u64(v, s),
        None => s.serialize_none(),
    }
}

fn error_info(e: &Error) -> ErrorInfo {
    let (kind, offset, file) = match e {
        Error::Io { offset, .. } => ("io", Some(*offset), None),
        Error::PastEnd { offset, .. } => ("past-end", Some(*offset), None),
        Error::UnknownFormat { .. } => ("unknown-format", None, None),
        Error::UnknownFormatName(_) => ("unknown-format-name", None, None),
        Error::Invalid { offset, .. } => ("invalid", Some(*offset), None),
        Error::Unsupported { offset, .. } => ("unsupported", Some(*offset), None),
        Error::Limit { .. } => ("limit", None, None),
        Error::MissingFile { name, offset, .. } => ("missing-file", Some(*offset), Some(name.clone())),
        Error::CorruptMapping { offset, file, .. } => ("corrupt-mapping", Some(*offset), Some(file.clone())),
        Error::Cancelled => ("cancelled", None, None),
        _ => ("error", None, None),
    };
    ErrorInfo { kind, message: e.to_string(), offset, file }
}

pub(crate) fn plain_error(kind: &'static str, message: String) -> JsValue {
    to_js(&ErrorInfo { kind, message, offset: None, file: None })
}

fn js_error(e: Error) -> JsValue {
    to_js(&error_info(&e))
}

fn to_js<T: Serialize + ?Sized>(v: &T) -> JsValue {
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    v.serialize(&ser).unwrap_or_else(|e| JsValue::from_str(&format!("diskscope: could not serialise a result: {}", e)))
}

fn ok_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, JsValue> {
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    v.serialize(&ser).map_err(|e| plain_error("serialise", format!("could not serialise a result: {}", e)))
}

// ---------------------------------------------------------------------------------------
// The session

struct Session {
    chain: Chain,
    /// Index of the dropped file behind each layer of the chain.
    layer_file: Vec<usize>,
    /// Every dropped file (for views that open another one, such as a delta).
    files: Vec<Dropped>,
    /// The view the top image was opened with (a layer mapped alone opens the same way).
    options: diskscope_core::image::OpenOptions,
}

impl Session {
    /// The chain to map: the merged one, or (`layer` = Some(k)) layer k alone, opened again
    /// without its backing file, so what the layer itself stores shows and the rest is
    /// unallocated.
    fn map_chain(&self, layer: Option<u32>) -> Result<MapChain<'_>, JsValue> {
        let Some(k) = layer.map(|k| k as usize) else { return Ok(MapChain::Merged(&self.chain)) };
        let Some(l) = self.chain.layers.get(k) else {
            return Err(plain_error("usage", format!("the chain has no layer {}", k)));
        };
        let i = self.layer_file.get(k).copied().unwrap_or(0);
        let options = if k == 0 { self.options.clone() } else { Default::default() };
        let image = formats::open(js_file(&self.files, i), &l.name, None, true, &DroppedResolver(&self.files), &options).map_err(js_error)?;
        Ok(MapChain::Alone(Chain { layers: vec![diskscope_core::Layer { name: l.name.clone(), image }], broken: None, findings: Vec::new() }))
    }
}

enum MapChain<'a> {
    Merged(&'a Chain),
    Alone(Chain),
}

impl std::ops::Deref for MapChain<'_> {
    type Target = Chain;
    fn deref(&self) -> &Chain {
        match self {
            MapChain::Merged(c) => c,
            MapChain::Alone(c) => c,
        }
    }
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

fn with_session<T>(f: impl FnOnce(&Session) -> Result<T, JsValue>) -> Result<T, JsValue> {
    SESSION.with(|s| match s.borrow().as_ref() {
        Some(session) => f(session),
        None => Err(plain_error("no-session", String::from("no image is open"))),
    })
}

/// What the probe learnt about one dropped file.
enum Probed {
    /// Not a format diskscope recognises (or unreadable: `why`).
    NotImage { why: Option<String> },
    /// An image; `backing` is the dropped file its header names, if it was dropped.
    Image { backing: Option<usize>, versions: bool },
}

fn probe_all(files: &[Dropped]) -> Vec<Probed> {
    (0..files.len())
        .map(|i| {
            let f = js_file(files, i);
            match formats::probe(&*f) {
                Ok(Some(driver)) => match formats::open(f, &files[i].name, Some(driver.name), false, &DroppedResolver(files), &Default::default()) {
                    Ok(image) => Probed::Image {
                        backing: image.info().backing.as_ref().and_then(|b| find_file(files, &b.name)),
                        versions: matches!(image.block_versions(0, 0), Ok(Some(_))),
                    },
                    // Recognised but broken: still the image to show (the open error explains).
                    Err(_) => Probed::Image { backing: None, versions: false },
                },
                Ok(None) => Probed::NotImage { why: None },
                Err(e) => Probed::NotImage { why: Some(e.to_string()) },
            }
        })
        .collect()
}

/// The image to inspect: the asked-for one; else one that is no other image's backing
/// file, preferring the most recently dropped, then the one with the longest chain here.
fn choose_top(files: &[Dropped], probed: &[Probed], prefer: &[String], top: Option<&str>) -> (Option<usize>, Vec<usize>) {
    let images: Vec<usize> = (0..files.len()).filter(|&i| matches!(probed[i], Probed::Image { .. })).collect();
    let backing_of = |i: usize| match probed[i] {
        Probed::Image { backing, .. } => backing.filter(|&b| b != i),
        Probed::NotImage { .. } => None,
    };
    let mut candidates: Vec<usize> = images.iter().copied().filter(|&i| !images.iter().any(|&j| backing_of(j) == Some(i))).collect();
    if candidates.is_empty() {
        candidates = images.clone(); // every image backs another: a loop; show them all
    }
    if let Some(name) = top {
        if let Some(i) = images.iter().copied().find(|&i| files[i].name == name) {
            return (Some(i), candidates);
        }
    }
    let depth = |mut i: usize| {
        let mut n = 0;
        while let Some(b) = backing_of(i) {
            n += 1;
            if n > files.len() {
                break;
            }
            i = b;
        }
        n
    };
    let preferred = |i: usize| prefer.iter().any(|p| *p == files[i].name);
    let best = candidates.iter().copied().max_by_key(|&i| (preferred(i), depth(i), std::cmp::Reverse(i)));
    (best, candidates)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileRole {
    name: String,
    #[serde(serialize_with = "ser_u64")]
    size: u64,
    /// "top", "backing", "image" (another image, not in this chain) or "not-an-image".
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LayerCheck {
    layer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<CheckResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Opened<'a> {
    top: &'a str,
    /// Dropped images that could be the top (none is another's backing file).
    candidates: Vec<&'a str>,
    files: Vec<FileRole>,
    report: &'a Report,
    /// `check` of each layer, top first.
    checks: Vec<LayerCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain_break: Option<&'a ChainBreak>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain_break_finding: Option<Finding>,
    #[serde(serialize_with = "ser_u64")]
    virtual_size: u64,
    #[serde(serialize_with = "ser_u64")]
    cluster_size: u64,
    /// The top image's internal snapshots (qcow2).
    snapshots: Vec<diskscope_core::model::Snapshot>,
    /// The view that was opened: metadata as stored (journal/log not replayed), and the
    /// snapshot read instead of the current disk.
    as_stored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<String>,
    /// The top image stamps blocks with versions (GOW3).
    has_versions: bool,
    /// Dropped images (other than the top) that keep block versions too: delta candidates.
    versioned: Vec<String>,
}

/// Open a session over the dropped files (`names[i]` has `sizes[i]` bytes; the worker
/// reads file `i` for `ds_read(i, ..)`). `top` names the image to inspect; otherwise it is
/// chosen (see `choose_top`), preferring files named in `prefer` (the latest drop).
/// Returns the report, a check of every layer and the chain break, if any. The session
/// is replaced only when this succeeds.
#[wasm_bindgen]
pub fn open(
    names: Vec<String>,
    sizes: Vec<f64>,
    prefer: Vec<String>,
    top: Option<String>,
    as_stored: bool,
    snapshot: Option<String>,
) -> Result<JsValue, JsValue> {
    if names.len() != sizes.len() {
        return Err(plain_error("usage", String::from("open: names and sizes differ in length")));
    }
    if names.is_empty() {
        return Err(plain_error("no-files", String::from("no files were given")));
    }
    let files: Vec<Dropped> = names.into_iter().zip(sizes).map(|(name, size)| Dropped { name, size: size.max(0.0) as u64 }).collect();
    let probed = probe_all(&files);
    let (top, candidates) = choose_top(&files, &probed, &prefer, top.as_deref());
    let Some(top) = top else {
        let list: Vec<String> = files
            .iter()
            .zip(&probed)
            .map(|(f, p)| match p {
                Probed::NotImage { why: Some(why) } => format!("{} ({}; {})", f.name, human_size(f.size), why),
                _ => format!("{} ({})", f.name, human_size(f.size)),
            })
            .collect();
        let message = if files.len() == 1 {
            format!(
                "The dropped file {} is not a disk image diskscope recognises. A raw disk has no header to recognise it by: drop it together with the image that uses it as its backing file.",
                list[0]
            )
        } else {
            format!(
                "None of the {} dropped files is a disk image diskscope recognises: {}. A raw disk has no header to recognise it by: drop it together with the image that uses it as its backing file.",
                files.len(),
                list.join(", ")
            )
        };
        return Err(plain_error("no-image", message));
    };

    let resolver = DroppedResolver(&files);
    let options = diskscope_core::image::OpenOptions { as_stored, snapshot: snapshot.clone().filter(|s| !s.is_empty()) };
    let chain = Chain::open_with(&files[top].name, js_file(&files, top), None, &resolver, &options).map_err(js_error)?;
    let layer_file: Vec<usize> = chain.layers.iter().map(|l| find_file(&files, &l.name).unwrap_or(top)).collect();
    let report = Report::new(&chain).map_err(js_error)?;
    let checks = chain
        .layers
        .iter()
        .map(|l| match l.image.check() {
            Ok(r) => LayerCheck { layer: l.name.clone(), result: Some(r), error: None },
            Err(e) => LayerCheck { layer: l.name.clone(), result: None, error: Some(error_info(&e)) },
        })
        .collect();
    let roles = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let layer = layer_file.iter().position(|&x| x == i);
            let (role, note) = match (layer, &probed[i]) {
                (Some(0), _) => ("top", None),
                (Some(_), _) => ("backing", None),
                (None, Probed::Image { .. }) => ("image", None),
                (None, Probed::NotImage { why }) => ("not-an-image", why.clone()),
            };
            FileRole { name: f.name.clone(), size: f.size, role, layer, note }
        })
        .collect();
    let opened = Opened {
        top: &files[top].name,
        candidates: candidates.iter().map(|&i| files[i].name.as_str()).collect(),
        files: roles,
        report: &report,
        checks,
        chain_break: chain.broken.as_ref(),
        chain_break_finding: chain.broken.as_ref().map(|b| b.finding()),
        virtual_size: chain.virtual_size(),
        cluster_size: chain.top().info().cluster_size,
        snapshots: chain.top().snapshots(),
        as_stored,
        snapshot: options.snapshot.clone(),
        has_versions: matches!(chain.top().block_versions(0, 0), Ok(Some(_))),
        versioned: views::versioned_images(&files, &probed, top),
    };
    let value = ok_js(&opened)?;
    drop(opened);
    SESSION.with(|s| *s.borrow_mut() = Some(Session { chain, layer_file, files, options }));
    Ok(value)
}

/// Forget the open session.
/// Panics on purpose, for the browser test of the page's recovery from a trapped
/// instance (a panic is `unreachable` in wasm, as a real bug's would be).
#[wasm_bindgen]
pub fn fail_for_test() {
    panic!("a failure the test asked for");
}

#[wasm_bindgen]
pub fn close() {
    SESSION.with(|s| s.borrow_mut().take());
}

fn human_size(v: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v as f64;
    let mut i = 0;
    while x >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} bytes", v)
    } else {
        format!("{:.1} {}", x, UNITS[i])
    }
}

// ---------------------------------------------------------------------------------------
// The map

pub(crate) fn set(obj: &js_sys::Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = js_sys::Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// The allocation-map picture, at most `max_cells` cells (one per cluster, or a
/// power-of-two number of clusters per cell for big disks). Returns
/// `{cellSize, cellCount, virtualSize, classes: Uint8Array, totals: number[], classIds}`:
/// `classes[i]` is the class of guest bytes `[i*cellSize, (i+1)*cellSize)`, `totals[c]` the
/// guest bytes of class `c`; backing data at depth d is class `classIds.backing + d - 1`.
/// With `start` and `length`, only that guest window (a zoomed-in map): cell `i` then
/// covers `start + i*cellSize`, and the totals count the window.
#[wasm_bindgen]
pub fn cells(max_cells: f64, unit: f64, start: Option<f64>, length: Option<f64>, layer: Option<u32>) -> Result<js_sys::Object, JsValue> {
    with_session(|session| {
        let s = &session.map_chain(layer)?;
        // `unit` > 0: draw at that granularity (one of the report's `grids`), else per cluster.
        let max = max_cells.max(1.0) as u64;
        let unit = if unit >= 1.0 { unit as u64 } else { s.top().info().cluster_size };
        let size = s.virtual_size();
        let start = start.map_or(0, |v| v.max(0.0) as u64);
        let length = length.map_or(size, |v| v.max(0.0) as u64);
        let cells = s.cells_in(start, length, unit, max).map_err(js_error)?;
        let out = js_sys::Object::new();
        set(&out, "start", start.min(size) as f64);
        set(&out, "cellSize", cells.cell_size as f64);
        set(&out, "cellCount", cells.classes.len() as f64);
        set(&out, "virtualSize", s.virtual_size() as f64);
        set(&out, "classes", js_sys::Uint8Array::from(&cells.classes[..]));
        let totals = js_sys::Array::new();
        for t in &cells.totals {
            totals.push(&JsValue::from_f64(*t as f64));
        }
        set(&out, "totals", totals);
        let ids = js_sys::Object::new();
        for (name, id) in [
            ("unallocated", class::UNALLOCATED),
            ("zero", class::ZERO),
            ("data", class::DATA),
            ("compressed", class::COMPRESSED),
            ("invalid", class::INVALID),
            ("missing", class::MISSING),
            ("backing", class::BACKING),
        ] {
            set(&ids, name, id);
        }
        set(&out, "classIds", ids);
        let layers = js_sys::Array::new();
        for l in &s.layers {
            layers.push(&JsValue::from_str(&l.name));
        }
        set(&out, "layers", layers);
        Ok(out)
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Where {
    #[serde(serialize_with = "ser_u64")]
    start: u64,
    #[serde(serialize_with = "ser_u64")]
    length: u64,
    class: u8,
    /// Layer the bytes come from (0 = the top image), or the deepest layer consulted.
    depth: u32,
    /// That layer's file name.
    layer: String,
    present: bool,
    zero: bool,
    data: bool,
    compressed: bool,
    /// Byte offset in the layer's file.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt")]
    host_offset: Option<u64>,
    /// Byte offset of the invalid table entry mapping this range.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt")]
    invalid_entry: Option<u64>,
    missing: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Lookup {
    entries: Vec<Where>,
    /// Entries left out (the range has more runs than are listed).
    more: usize,
}

/// Where the guest bytes `[start, start+length)` live: the merged map's runs, at most
/// `limit` of them, each with its layer's file name and host offset.
#[wasm_bindgen]
pub fn lookup(start: f64, length: f64, limit: u32, layer: Option<u32>) -> Result<JsValue, JsValue> {
    with_session(|session| {
        let s = &session.map_chain(layer)?;
        // Walked, not mapped whole: a cell of a petabyte disk can hold millions of runs.
        let (start, limit) = (start.max(0.0) as u64, limit.max(1) as usize);
        let (mut out, mut more): (Vec<MapEntry>, usize) = (Vec::new(), 0);
        s.for_each_entry_in(start, start.saturating_add(length.max(0.0) as u64), |e| {
            if out.len() < limit {
                out.push(*e);
            } else {
                more += 1;
            }
            Ok(())
        })
        .map_err(js_error)?;
        let entries = out
            .iter()
            .map(|e| Where {
                start: e.start,
                length: e.length,
                class: class_of(e),
                depth: e.depth,
                layer: s.layers.get(e.depth as usize).map(|l| l.name.clone()).unwrap_or_default(),
                present: e.present,
                zero: e.zero,
                data: e.data,
                compressed: e.compressed,
                host_offset: e.offset,
                invalid_entry: e.invalid,
                missing: e.missing,
            })
            .collect();
        ok_js(&Lookup { entries, more })
    })
}

/// The metadata that maps guest byte `guest` in layer `depth` of the mapped chain (its
/// table entry, bitmap bit, version): `[{name, offset, size, raw, value, note}]`, offsets
/// in that layer's file.
#[wasm_bindgen]
pub fn cluster_fields(guest: f64, depth: u32, layer: Option<u32>) -> Result<JsValue, JsValue> {
    with_session(|session| {
        let s = &session.map_chain(layer)?;
        let Some(l) = s.layers.get(depth as usize) else { return ok_js(&Vec::<diskscope_core::Field>::new()) };
        let fields = l.image.cluster_fields(guest.max(0.0) as u64).map_err(js_error)?;
        ok_js(&fields)
    })
}

// ---------------------------------------------------------------------------------------
// Export

/// Part kinds in the `plan` array.
const PART_ZERO: f64 = 0.0;
const PART_FILE: f64 = 1.0;
const PART_COMPUTED: f64 = 2.0;

/// The raw image as parts, four numbers each, in guest order:
/// `[0, 0, 0, length]` zeros; `[1, file, offset, length]` bytes of dropped file `file`
/// from `offset`; `[2, guestStart, 0, length]` bytes to compute with `read`.
#[wasm_bindgen]
pub fn plan() -> Result<js_sys::Float64Array, JsValue> {
    with_session(|s| {
        let mut out: Vec<f64> = Vec::new();
        let mut guest = 0u64;
        s.chain
            .plan(|part| {
                let length = match part {
                    Part::Zero { length } => {
                        out.extend([PART_ZERO, 0.0, 0.0, length as f64]);
                        length
                    }
                    Part::File { layer, file, offset, length } => {
                        match s.layer_file.get(layer as usize) {
                            Some(&i) if file == 0 => out.extend([PART_FILE, i as f64, offset as f64, length as f64]),
                            // A layer's other files (none for QED) are not dropped files of
                            // their own here: read them through the chain.
                            _ => out.extend([PART_COMPUTED, guest as f64, 0.0, length as f64]),
                        }
                        length
                    }
                    Part::Computed { start, length } => {
                        out.extend([PART_COMPUTED, start as f64, 0.0, length as f64]);
                        length
                    }
                };
                guest += length;
                Ok(())
            })
            .map_err(js_error)?;
        Ok(js_sys::Float64Array::from(&out[..]))
    })
}

/// Guest bytes `[start, start+length)` as the virtual machine reads them (for computed
/// parts of the export). `length` is at most 64 MiB.
#[wasm_bindgen]
pub fn read(start: f64, length: f64) -> Result<js_sys::Uint8Array, JsValue> {
    with_session(|s| {
        if !(0.0..=(64u64 << 20) as f64).contains(&length) {
            return Err(plain_error("usage", format!("read: length {} is not between 0 and 64 MiB", length)));
        }
        let mut buf = vec![0u8; length as usize];
        s.chain.read(start.max(0.0) as u64, &mut buf).map_err(js_error)?;
        Ok(js_sys::Uint8Array::from(&buf[..]))
    })
}
