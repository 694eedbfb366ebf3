//! SHA-256 of the raw image, fed by the worker in guest order (web/export-work.js): zero
//! runs without reading anything, stored runs as the bytes the worker read, computed runs
//! read through the chain here. One hash at a time, like the session.
use std::cell::RefCell;

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

use crate::{js_error, plain_error, with_session};

thread_local! {
    static HASH: RefCell<Option<Sha256>> = const { RefCell::new(None) };
}

const ZEROS: [u8; 64 << 10] = [0; 64 << 10];

fn with_hash<T>(f: impl FnOnce(&mut Sha256) -> T) -> Result<T, JsValue> {
    HASH.with(|h| match h.borrow_mut().as_mut() {
        Some(h) => Ok(f(h)),
        None => Err(plain_error("usage", String::from("no hash was begun"))),
    })
}

/// Start a new hash (dropping any unfinished one).
#[wasm_bindgen]
pub fn hash_begin() {
    HASH.with(|h| *h.borrow_mut() = Some(Sha256::new()));
}

/// Hash `length` zero bytes.
#[wasm_bindgen]
pub fn hash_zeros(length: f64) -> Result<(), JsValue> {
    with_hash(|h| {
        let mut left = length.max(0.0) as u64;
        while left > 0 {
            let n = left.min(ZEROS.len() as u64) as usize;
            h.update(&ZEROS[..n]);
            left -= n as u64;
        }
    })
}

/// Hash these bytes.
#[wasm_bindgen]
pub fn hash_update(bytes: &[u8]) -> Result<(), JsValue> {
    with_hash(|h| h.update(bytes))
}

/// Hash guest bytes `[start, start+length)` as the virtual machine reads them (at most
/// 64 MiB at a time).
#[wasm_bindgen]
pub fn hash_guest(start: f64, length: f64) -> Result<(), JsValue> {
    if !(0.0..=(64u64 << 20) as f64).contains(&length) {
        return Err(plain_error("usage", format!("hash_guest: length {} is not between 0 and 64 MiB", length)));
    }
    let mut buf = vec![0u8; length as usize];
    with_session(|s| s.chain.read(start.max(0.0) as u64, &mut buf).map_err(js_error))?;
    with_hash(|h| h.update(&buf))
}

/// The hash of everything fed since `hash_begin`, as lowercase hex.
#[wasm_bindgen]
pub fn hash_end() -> Result<String, JsValue> {
    let h = HASH.with(|h| h.borrow_mut().take()).ok_or_else(|| plain_error("usage", String::from("no hash was begun")))?;
    Ok(h.finalize().iter().map(|b| format!("{:02x}", b)).collect())
}
