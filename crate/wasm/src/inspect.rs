//! The page's whole-inspection exports: the JSON report (the same bytes `diskscope report`
//! prints for the same image) and where each layer's data sits in its file, for the
//! to-scale layout strip.
use diskscope_core::report::Inspection;
use wasm_bindgen::prelude::*;

use crate::{js_error, plain_error, with_session};

/// `diskscope report --json` of the open session, as text (pretty-printed, final newline).
#[wasm_bindgen]
pub fn report_json() -> Result<String, JsValue> {
    with_session(|s| {
        let inspection = Inspection::new(&s.chain, &s.chain.layers[0].name).map_err(js_error)?;
        let mut text = serde_json::to_string_pretty(&inspection).map_err(|e| plain_error("serialise", format!("could not write the report: {}", e)))?;
        text.push('\n');
        Ok(text)
    })
}

/// Host ranges holding guest data, per layer: `[depth, offset, length, guest offset,
/// compressed (0 or 1), ...]`, a layer's ranges merged where both the file and the guest
/// offsets follow on, at most `max_runs` of them (the rest of the walk is skipped: the strip
/// then shows what was found). A compressed range stands alone, at its host offset with its
/// guest length: the hex view can name its guest offset, not each byte's.
#[wasm_bindgen]
pub fn host_data(max_runs: u32) -> Result<js_sys::Float64Array, JsValue> {
    with_session(|s| {
        let max = max_runs.max(1) as usize;
        let mut runs: Vec<(u32, u64, u64, u64, bool)> = Vec::new();
        let walked = s.chain.for_each_entry(|e| {
            let Some(offset) = e.offset.filter(|_| e.data && e.file == 0) else {
                return Ok(());
            };
            let follows = |l: &&mut (u32, u64, u64, u64, bool)| l.0 == e.depth && l.1 + l.2 == offset && l.3 + l.2 == e.start && !l.4 && !e.compressed;
            if let Some(last) = runs.last_mut().filter(follows) {
                last.2 += e.length;
            } else if runs.len() < max {
                runs.push((e.depth, offset, e.length, e.start, e.compressed));
            } else {
                return Err(diskscope_core::Error::Cancelled);
            }
            Ok(())
        });
        match walked {
            Ok(()) | Err(diskscope_core::Error::Cancelled) => {}
            Err(e) => return Err(js_error(e)),
        }
        let flat: Vec<f64> = runs.iter().flat_map(|&(d, o, l, g, c)| [d as f64, o as f64, l as f64, g as f64, c as u8 as f64]).collect();
        Ok(js_sys::Float64Array::from(&flat[..]))
    })
}
