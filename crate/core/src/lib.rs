//! diskscope core: reads virtual-disk images through a synchronous [`ReadAt`] and
//! explains them: header fields, allocation maps, backing chains, consistency findings,
//! and the bytes a guest would read.
//!
//! `no_std` + `alloc` so the same code runs in the browser (wasm in a worker) and in the
//! native CLI. Nothing here trusts a header: sizes are checked against [`limits`] before
//! anything is allocated, offsets against the file length before anything is read.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;
#[cfg(test)]
mod testutil;

pub mod chain;
pub mod codec;
pub mod compare;
pub mod convert;
pub mod delta;
pub mod error;
pub mod formats;
pub mod image;
pub mod io;
pub mod limits;
pub mod map;
pub mod model;
pub mod report;
#[cfg(any(test, feature = "samples"))]
pub mod samples;

pub use chain::{Chain, Layer, Resolver};
pub use error::Error;
pub use image::{Driver, Image};
pub use io::ReadAt;
pub use model::*;
