//! Formats recognised by their signature but not read yet. Recognising them matters even
//! before they are read: a backing file must never be mistaken for raw (its metadata would
//! be handed out as guest data), and a user deserves "this is a VHDX" over "unknown".
use crate::io::ReadAt;

/// (name, test) pairs; the test sees the first bytes and may read the file's tail.
static SIGNATURES: &[(&str, fn(&[u8], &dyn ReadAt) -> bool)] = &[
];

/// The name of a known format this file has the signature of, if any.
pub fn recognise(head: &[u8], file: &dyn ReadAt) -> Option<&'static str> {
    SIGNATURES.iter().find(|(_, test)| test(head, file)).map(|(name, _)| *name)
}
