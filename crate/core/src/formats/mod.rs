//! The format registry. Generic code reaches formats only through [`DRIVERS`].
use alloc::{boxed::Box, format, string::String, sync::Arc};


use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx, PROBE_BYTES};
use crate::io::ReadAt;
use crate::model::Hex;

pub mod addcow;
pub mod bitmap;
pub mod bytes;
pub mod cow;
pub mod fmt;
pub mod fvd;
pub mod gow;
mod known;
pub mod parallels;
pub mod qcow;
pub mod qcow2;
pub mod qed;
pub mod raw;
pub mod tables;
pub mod vdi;
pub mod vhdx;
pub mod vpc;
pub mod vmdk;
pub mod walk;

/// Probed in order; `raw` last and never by probe: any bytes are a raw image.
pub static DRIVERS: &[&Driver] = &[&vpc::DRIVER, &qed::DRIVER, &qcow2::DRIVER, &qcow::DRIVER, &cow::COW, &cow::RAW_COW, &addcow::DRIVER, &gow::DRIVER, &fvd::DRIVER, &vdi::DRIVER, &vhdx::DRIVER, &parallels::DRIVER, &vmdk::DRIVER, &raw::DRIVER];

/// The demo samples, one or more per format, in the gallery's order.
#[cfg(any(test, feature = "samples"))]
pub static DEMOS: &[&crate::samples::Demo] = &[
    &qcow2::sample::DEMO,
    &qed::sample::DEMO,
    &qcow::sample::DEMO,
    &vmdk::sample::DEMO,
    &vpc::sample::DEMO,
    &vhdx::sample::DEMO,
    &vdi::sample::DEMO,
    &parallels::sample::DEMO,
    &fvd::sample::DEMO,
    &gow::sample::DEMO,
    &gow::sample::DEMO_V1,
    &addcow::sample::DEMO,
    &cow::sample::DEMO,
    &cow::sample::DEMO_RAW,
];

pub fn driver(name: &str) -> Result<&'static Driver> {
    DRIVERS.iter().copied().find(|d| d.name == name).ok_or_else(|| Error::UnknownFormatName(String::from(name)))
}

/// The driver whose probe accepts the file, if any. A file with the signature of a format
/// diskscope knows but cannot read yet is an error, never "no match" (which means raw).
pub fn probe(file: &dyn ReadAt) -> Result<Option<&'static Driver>> {
    let mut head = [0u8; PROBE_BYTES];
    let n = (file.size().min(PROBE_BYTES as u64)) as usize;
    file.read_at(0, &mut head[..n])?;
    let head = &head[..n];
    if let Some(d) = DRIVERS.iter().copied().find(|d| (d.probe)(head, file)) {
        return Ok(Some(d));
    }
    match known::recognise(head, file) {
        Some(name) => Err(Error::Unsupported {
            format: name,
            offset: 0,
            message: String::from("diskscope recognises this format but cannot read it yet"),
        }),
        None => Ok(None),
    }
}

/// Open with a named format, or by probing; `fallback_raw` opens unrecognised files as
/// raw (what QEMU does for backing files) instead of refusing them.
pub fn open(
    file: Arc<dyn ReadAt>,
    name: &str,
    format: Option<&str>,
    fallback_raw: bool,
    resolver: &dyn crate::chain::Resolver,
    options: &crate::image::OpenOptions,
) -> Result<Box<dyn Image>> {
    let ctx = OpenCtx { name, resolver, options };
    let driver = match format {
        Some(f) => driver(f)?,
        None => match probe(&*file)? {
            Some(d) => d,
            None if fallback_raw => &raw::DRIVER,
            None => {
                let mut head = [0u8; 16];
                let n = file.size().min(16) as usize;
                file.read_at(0, &mut head[..n])?;
                return Err(Error::UnknownFormat { head: format!("{}", Hex(&head[..n])) });
            }
        },
    };
    (driver.open)(file, &ctx)
}
