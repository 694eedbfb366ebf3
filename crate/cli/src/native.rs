//! The core's `ReadAt` over a host file, and backing-file lookup relative to the image's
//! folder, as QEMU does it.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use diskscope_core::{Error, ReadAt, Resolver};

pub struct HostFile {
    file: File,
    size: u64,
}

impl HostFile {
    pub fn open(path: &Path) -> std::io::Result<HostFile> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::other("is a directory"));
        }
        Ok(HostFile { size: meta.len(), file })
    }
}

impl ReadAt for HostFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.file.read_exact_at(buf, offset).map_err(|e| Error::Io { offset, len: buf.len() as u64, message: e.to_string() })
    }

    /// SEEK_DATA / SEEK_HOLE, which is what QEMU's file driver asks, so our map of sparse
    /// raw files and of data clusters over host holes reads as qemu-img's does.
    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        let fd = self.file.as_raw_fd();
        let off = i64::try_from(offset).ok()?;
        // SAFETY: lseek on a descriptor we own; it only moves the file position, which
        // nothing else uses (reads are positioned).
        let data = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
        if data < 0 {
            let enxio = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO);
            return enxio.then_some((false, len)); // a hole up to the end of the file
        }
        if data > off {
            return Some((false, ((data - off) as u64).min(len)));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, off, libc::SEEK_HOLE) };
        if hole <= off {
            return None;
        }
        Some((true, ((hole - off) as u64).min(len)))
    }
}

/// Backing names are relative to the folder of the image that names them.
pub struct DirResolver;

pub fn key(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).to_string_lossy().into_owned()
}

impl Resolver for DirResolver {
    fn resolve(&self, name: &str, by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        let named = Path::new(name);
        let path: PathBuf = if named.is_absolute() {
            named.to_path_buf()
        } else {
            Path::new(by).parent().unwrap_or(Path::new(".")).join(named)
        };
        let file = HostFile::open(&path).ok()?;
        Some((key(&path), Arc::new(file)))
    }

    fn candidates(&self, by: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        let dir = Path::new(by).parent().unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        paths.sort();
        paths.into_iter().filter_map(|p| Some((key(&p), Arc::new(HostFile::open(&p).ok()?) as Arc<dyn ReadAt>))).collect()
    }
}

/// The host path of file `file` of layer `layer`: the layer's own file is its key (a
/// canonical path); companions carry the path they resolved to.
pub fn path_of(chain: &diskscope_core::Chain, layer: usize, file: u16) -> Option<PathBuf> {
    let l = chain.layers.get(layer)?;
    match file {
        0 => Some(PathBuf::from(&l.name)),
        n => l.image.info().companions.get(n as usize - 1)?.found.as_ref().map(PathBuf::from),
    }
}

/// copy_file_range from `src` to `dst`. Ok(false) when the kernel cannot do it for these
/// files (the caller falls back to reading and writing); a short source reads as zeros,
/// which the output already holds.
pub fn copy_range(src: &File, mut from: u64, dst: &File, mut to: u64, mut len: u64) -> Result<bool, Error> {
    let first = to;
    while len > 0 {
        let (mut a, mut b) = (from as libc::loff_t, to as libc::loff_t);
        let want = len.min(1 << 30) as usize;
        // SAFETY: both descriptors are open files we own; the offsets are passed by pointer
        // so neither file position moves.
        let n = unsafe { libc::copy_file_range(src.as_raw_fd(), &mut a, dst.as_raw_fd(), &mut b, want, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) if to == first => Ok(false),
                _ => Err(Error::Io { offset: from, len, message: e.to_string() }),
            };
        }
        if n == 0 {
            break; // past the source's end: those bytes are zeros
        }
        (from, to, len) = (from + n as u64, to + n as u64, len - n as u64);
    }
    Ok(true)
}
