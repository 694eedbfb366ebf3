//! See exercise.rs: `inspect`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| exercise::inspect(data));
