//! Demo mode: the core's sample images (feature `samples`) handed to the worker as files.
//! The worker wraps them in `File`s and the page opens them as if they had been dropped, so
//! every view (export, snapshots, the as-stored switch) works on a demo as on real files.
use diskscope_core::samples;
use wasm_bindgen::prelude::*;

use crate::{plain_error, set};

/// Every demo: `[{name, title, about}]`, in the gallery's order.
#[wasm_bindgen]
pub fn demos() -> js_sys::Array {
    let out = js_sys::Array::new();
    for d in samples::all() {
        let o = js_sys::Object::new();
        set(&o, "name", d.name);
        set(&o, "title", d.title);
        set(&o, "about", d.about);
        out.push(&o);
    }
    out
}

/// The files of demo `name`, top image first: `{name, title, about, files: [{name, bytes}]}`.
#[wasm_bindgen]
pub fn demo(name: &str) -> Result<js_sys::Object, JsValue> {
    let Some(d) = samples::find(name) else {
        let names: Vec<&str> = samples::all().iter().map(|d| d.name).collect();
        return Err(plain_error("no-demo", format!("there is no demo called '{}'; the demos are {}", name, names.join(", "))));
    };
    let sample = (d.build)();
    let out = js_sys::Object::new();
    set(&out, "name", d.name);
    set(&out, "title", d.title);
    set(&out, "about", d.about);
    let files = js_sys::Array::new();
    for (n, bytes) in &sample.files {
        let f = js_sys::Object::new();
        set(&f, "name", n.as_str());
        set(&f, "bytes", js_sys::Uint8Array::from(&bytes[..]));
        files.push(&f);
    }
    set(&out, "files", files);
    Ok(out)
}
