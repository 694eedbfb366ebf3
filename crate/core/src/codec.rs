//! Decoding compressed clusters and grains into a buffer of exactly the cluster's size, so
//! no input can make a decoder produce more than that (decompression bombs are impossible
//! by construction). Semantics follow QEMU's: trailing input after the data is ignored (a
//! qcow2 compressed cluster's length is rounded up to sectors and runs into its neighbour).
use alloc::{boxed::Box, format, string::String};

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Raw deflate, no header: qcow and qcow2 "zlib" clusters (QEMU uses windowBits -12).
    Deflate,
    /// zlib (RFC 1950): VMDK stream-optimized grains.
    Zlib,
    /// Zstandard frames: qcow2 with compression_type = 1.
    Zstd,
}

/// How a successful decode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The stream ended exactly at the end of the buffer.
    Exact,
    /// The buffer filled before the stream ended: QEMU accepts this and ignores the rest.
    Overflow,
}

/// Fill `out` from `input`. An error says what went wrong, in words.
pub fn decode(codec: Codec, input: &[u8], out: &mut [u8]) -> Result<Fill, String> {
    match codec {
        Codec::Deflate | Codec::Zlib => inflate(input, out, codec == Codec::Zlib),
        Codec::Zstd => zstd(input, out),
    }
}

#[cfg(feature = "native-zstd")]
use zstd_native as zstd;
#[cfg(not(feature = "native-zstd"))]
use zstd_rust as zstd;

fn inflate(input: &[u8], out: &mut [u8], zlib: bool) -> Result<Fill, String> {
    let mut state = Box::<DecompressorOxide>::default();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
        | if zlib { inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER } else { 0 };
    let (status, _, written) = decompress(&mut state, input, out, 0, flags);
    match status {
        TINFLStatus::Done if written == out.len() => Ok(Fill::Exact),
        TINFLStatus::HasMoreOutput if written == out.len() => Ok(Fill::Overflow),
        TINFLStatus::Done => Err(format!("the compressed data ends after {} of {} bytes", written, out.len())),
        TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
            Err(format!("the compressed data is cut short after {} of {} bytes", written, out.len()))
        }
        other => Err(format!("the compressed data is not valid {} ({:?}) after {} bytes", if zlib { "zlib" } else { "deflate" }, other, written)),
    }
}

/// libzstd's streaming decoder, with the same semantics as the pure-Rust one below:
/// frames follow one another until `out` is full; what follows is ignored.
#[cfg(feature = "native-zstd")]
fn zstd_native(input: &[u8], out: &mut [u8]) -> Result<Fill, String> {
    use zstd_safe::{DCtx, InBuffer, OutBuffer};
    let len = out.len();
    if len == 0 {
        return Ok(Fill::Exact);
    }
    let mut dctx = DCtx::create();
    let mut src = InBuffer::around(input);
    let mut dst = OutBuffer::around(out);
    loop {
        let (was_in, was_out) = (src.pos(), dst.pos());
        let hint = dctx
            .decompress_stream(&mut dst, &mut src)
            .map_err(|code| format!("the zstd data is not valid after {} bytes: {}", dst.pos(), zstd_safe::get_error_name(code)))?;
        if dst.pos() == len {
            return Ok(if hint == 0 { Fill::Exact } else { Fill::Overflow });
        }
        // With room left in `out`, a call that moves neither buffer has no more to give.
        if (src.pos(), dst.pos()) == (was_in, was_out) {
            return Err(format!("the zstd data is cut short after {} of {} bytes", dst.pos(), len));
        }
    }
}

/// The pure-Rust decoder, the one the page runs (and the only one without the feature).
#[cfg_attr(feature = "native-zstd", allow(dead_code))]
fn zstd_rust(mut input: &[u8], out: &mut [u8]) -> Result<Fill, String> {
    use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
    use ruzstd::io::Read;
    let mut fd = FrameDecoder::new();
    let mut pos = 0;
    // Frames follow one another until the cluster is full, as QEMU's qcow2_zstd_decompress.
    while pos < out.len() {
        if input.is_empty() {
            return Err(format!("the zstd data is cut short after {} of {} bytes", pos, out.len()));
        }
        fd.init(&mut input).map_err(|e| format!("not a zstd frame after {} bytes: {}", pos, e))?;
        loop {
            fd.decode_blocks(&mut input, BlockDecodingStrategy::UptoBytes(out.len() - pos))
                .map_err(|e| format!("the zstd data is not valid after {} bytes: {}", pos, e))?;
            pos += fd.read(&mut out[pos..]).map_err(|e| format!("zstd: {:?}", e))?;
            if pos == out.len() {
                return Ok(if fd.is_finished() && fd.can_collect() == 0 { Fill::Exact } else { Fill::Overflow });
            }
            if fd.is_finished() && fd.can_collect() == 0 {
                break;
            }
        }
    }
    Ok(Fill::Exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn sample() -> Vec<u8> {
        (0..65536u32).map(|i| ((i * 7) % 13) as u8 + (i / 4096) as u8).collect()
    }

    #[test]
    fn deflate_and_zlib_fill_the_cluster_and_ignore_trailing_bytes() {
        let data = sample();
        for (codec, mut c) in [
            (Codec::Deflate, miniz_oxide::deflate::compress_to_vec(&data, 6)),
            (Codec::Zlib, miniz_oxide::deflate::compress_to_vec_zlib(&data, 6)),
        ] {
            let stream = c.len();
            c.extend_from_slice(&[0xAB; 300]); // the next cluster's bytes, as in a qcow2 file
            let mut out = vec![0u8; data.len()];
            assert_eq!(decode(codec, &c, &mut out), Ok(Fill::Exact));
            assert_eq!(out, data);
            // Shorter output than the stream: QEMU accepts, we say so.
            assert_eq!(decode(codec, &c, &mut out[..1000]), Ok(Fill::Overflow));
            // Cut input and a longer buffer: errors in words, no panic.
            assert!(decode(codec, &c[..stream / 2], &mut out).unwrap_err().contains("cut short"));
            let mut big = vec![0u8; data.len() * 2];
            assert!(decode(codec, &c, &mut big).unwrap_err().contains("ends after 65536"));
            assert!(decode(codec, &[0xff; 64], &mut out).is_err());
        }
    }

    #[test]
    fn zstd_frames_fill_the_cluster_across_frames_and_ignore_trailing_bytes() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let data = sample();
        let (a, b) = data.split_at(20000);
        // Two frames back to back, then junk: QEMU reads frames until the cluster is full.
        let mut c = compress_to_vec(a, CompressionLevel::Fastest);
        c.extend(compress_to_vec(b, CompressionLevel::Fastest));
        let stream = c.len();
        c.extend_from_slice(&[0xAB; 100]);
        let mut out = vec![0u8; data.len()];
        assert_eq!(decode(Codec::Zstd, &c, &mut out), Ok(Fill::Exact));
        assert_eq!(out, data);
        assert_eq!(decode(Codec::Zstd, &c, &mut out[..5000]), Ok(Fill::Overflow));
        assert!(decode(Codec::Zstd, &c[..stream - 10], &mut out).is_err());
    }

    #[test]
    fn zstd_garbage_and_empty_input_are_errors() {
        let mut out = vec![0u8; 4096];
        assert!(decode(Codec::Zstd, &[], &mut out).unwrap_err().contains("cut short"));
        assert!(decode(Codec::Zstd, &[1, 2, 3, 4, 5, 6, 7, 8], &mut out).is_err());
    }

    /// The CLI decodes with libzstd, the page with ruzstd: both must read every cluster alike.
    #[cfg(feature = "native-zstd")]
    #[test]
    fn libzstd_and_ruzstd_agree() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let data = sample();
        let (a, b) = data.split_at(20000);
        let mut c = compress_to_vec(a, CompressionLevel::Fastest);
        c.extend(compress_to_vec(b, CompressionLevel::Fastest));
        c.extend_from_slice(&[0xAB; 100]);
        let sizes = [0, 1, 5000, 20000, data.len(), data.len() * 2];
        let same = |input: &[u8], strict: bool| {
            for &n in &sizes {
                let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
                let (rx, ry) = (zstd_native(input, &mut x), zstd_rust(input, &mut y));
                match (&rx, &ry) {
                    (Ok(p), Ok(q)) => assert_eq!((p, &x), (q, &y), "{} bytes in, {} out", input.len(), n),
                    (Err(_), Err(_)) => {}
                    // Damaged data: one decoder may check more than the other, never panic.
                    _ => assert!(!strict, "{} bytes in, {} out: libzstd {:?}, ruzstd {:?}", input.len(), n, rx, ry),
                }
            }
        };
        same(&c, true);
        same(&[], true);
        for cut in (0..c.len()).step_by(97) {
            same(&c[..cut], true);
        }
        for at in (0..c.len()).step_by(53) {
            let mut d = c.clone();
            d[at] ^= 0x5A;
            same(&d, false);
        }
    }
}
