//! One error type for the whole core. Every variant that concerns bytes names where
//! they are, so a user can go and look.
use alloc::string::String;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The platform could not read the bytes (I/O error, permission, browser read failure).
    #[error("reading {len} bytes at offset {offset} failed: {message}")]
    Io { offset: u64, len: u64, message: String },
    /// A structure the format needs lies (partly) past the end of its file.
    #[error("{what} at offset {offset} ({len} bytes) runs past the end of the file ({file_size} bytes)")]
    PastEnd { what: &'static str, offset: u64, len: u64, file_size: u64 },
    /// No driver recognised the first bytes.
    #[error("not a disk image format diskscope recognises (first bytes: {head})")]
    UnknownFormat { head: String },
    /// The asked-for format name is not one diskscope has.
    #[error("unknown format name '{0}'")]
    UnknownFormatName(String),
    /// A header or table value breaks the format's rules.
    #[error("{format}: {message} (byte {offset})")]
    Invalid { format: &'static str, offset: u64, message: String },
    /// Valid, but uses something this reader will not interpret (an unknown feature bit).
    #[error("{format}: {message} (byte {offset})")]
    Unsupported { format: &'static str, offset: u64, message: String },
    /// A value would make the reader hold or walk more than its limits allow.
    #[error("{what}: {needed} exceeds the limit of {limit} (see limits)")]
    Limit { what: &'static str, needed: u64, limit: u64 },
    /// A file the image names (backing, data) was not given or not found.
    #[error("missing file '{name}' (named by {by} at byte {offset})")]
    MissingFile { name: String, by: String, offset: u64 },
    /// The chain cannot go on through the backing file a header names.
    #[error("backing file '{name}' (named at byte {offset} of {by}): {reason}")]
    Backing { name: String, by: String, offset: u64, reason: String },
    /// Reading guest bytes that the map marks as invalid (a corrupt table entry).
    #[error("guest offset {guest} maps through an invalid entry at byte {offset} of {file}")]
    CorruptMapping { guest: u64, file: String, offset: u64 },
    /// The caller asked to stop.
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = core::result::Result<T, E>;
