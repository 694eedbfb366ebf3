//! Formats recognised by their signature but not read yet. Recognising them matters even
//! before they are read: a backing file must never be mistaken for raw (its metadata would
//! be handed out as guest data), and a user deserves "this is a VHDX" over "unknown".
use crate::io::ReadAt;

/// (name, test) pairs; the test sees the first bytes and may read the file's tail.
static SIGNATURES: &[(&str, fn(&[u8], &dyn ReadAt) -> bool)] = &[
    ("vhdx", |h, _| h.starts_with(b"vhdxfile")),
    ("vpc", |h, f| h.starts_with(b"conectix") || tail_is_vhd_footer(f)),
];

/// A fixed VHD is raw data followed by a 512-byte footer that starts "conectix".
fn tail_is_vhd_footer(f: &dyn ReadAt) -> bool {
    let size = f.size();
    let mut b = [0u8; 8];
    size >= 512 && f.read_at(size - 512, &mut b).is_ok() && &b == b"conectix"
}

/// The name of a known format this file has the signature of, if any.
pub fn recognise(head: &[u8], file: &dyn ReadAt) -> Option<&'static str> {
    SIGNATURES.iter().find(|(_, test)| test(head, file)).map(|(name, _)| *name)
}
