//! The vhdx driver forced on any bytes (see exercise.rs: `format`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| exercise::format("vhdx", data));
