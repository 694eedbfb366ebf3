//! Shared helpers for the integration tests that hold diskscope up against QEMU's own
//! tools. Every image is made at test time with `qemu-img create` and `qemu-io`, in a
//! temporary folder, and every expected result comes from `qemu-img` run on the same file.
//!
//! The binary under test is `$DISKSCOPE_BIN` when set (scripts/test.sh points it at the
//! release build), else the one cargo builds for these tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

pub fn diskscope_bin() -> PathBuf {
    match std::env::var_os("DISKSCOPE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_diskscope")),
    }
}

/// A temporary folder that holds one test's images; removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::Builder::new().prefix("diskscope-test-").tempdir().expect("create a temp dir") }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(mut cmd: Command) -> Output {
    let what = describe(&cmd);
    cmd.output().unwrap_or_else(|e| panic!("could not run `{}`: {}", what, e))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The result of a command: exit code and both streams as text.
#[derive(Debug)]
pub struct Ran {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(what: String, o: Output) -> Ran {
        Ran { what, code: o.status.code(), stdout: text(&o.stdout), stderr: text(&o.stderr) }
    }
    pub fn ok(self) -> Ran {
        assert_eq!(self.code, Some(0), "`{}` failed\nstdout:\n{}\nstderr:\n{}", self.what, self.stdout, self.stderr);
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` did not print JSON ({})\nstdout:\n{}\nstderr:\n{}", self.what, e, self.stdout, self.stderr))
    }
    /// Both streams, for messages that may go to either.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn ran(cmd: Command) -> Ran {
    let what = describe(&cmd);
    let o = run(cmd);
    Ran::from(what, o)
}

/// Run diskscope from `/`, so relative backing names can only resolve against the image's
/// own folder (never against the working directory).
pub fn diskscope(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Ran {
    let mut cmd = Command::new(diskscope_bin());
    cmd.current_dir("/").env("RUST_BACKTRACE", "0").env("NO_COLOR", "1");
    for a in args {
        cmd.arg(a.as_ref());
    }
    ran(cmd)
}

/// Run a QEMU tool inside the scratch folder (so relative backing names stay relative).
pub fn qemu(dir: &Scratch, tool: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Ran {
    let mut cmd = Command::new(tool);
    cmd.current_dir(dir.root());
    for a in args {
        cmd.arg(a.as_ref());
    }
    ran(cmd)
}

/// `qemu-img create -f FMT [-o cluster_size=C[,table_size=T]] [-b B -F BF] NAME SIZE`.
pub struct Create<'a> {
    pub fmt: &'a str,
    pub cluster: Option<u64>,
    pub table_size: Option<u64>,
    pub backing: Option<(&'a str, &'a str)>,
}

pub fn create(dir: &Scratch, name: &str, size: u64, opts: Create) -> PathBuf {
    let mut args: Vec<String> = vec!["create".into(), "-q".into(), "-f".into(), opts.fmt.into()];
    let mut o = Vec::new();
    if let Some(c) = opts.cluster {
        o.push(format!("cluster_size={}", c));
    }
    if let Some(t) = opts.table_size {
        o.push(format!("table_size={}", t));
    }
    if !o.is_empty() {
        args.push("-o".into());
        args.push(o.join(","));
    }
    if let Some((b, bf)) = opts.backing {
        args.extend(["-b".into(), b.into(), "-F".into(), bf.into()]);
    }
    args.push(name.into());
    args.push(size.to_string());
    let refs: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
    qemu(dir, "qemu-img", &refs).ok();
    dir.path(name)
}

pub fn qed(dir: &Scratch, name: &str, size: u64, cluster: u64) -> PathBuf {
    create(dir, name, size, Create { fmt: "qed", cluster: Some(cluster), table_size: None, backing: None })
}

pub fn qed_over(dir: &Scratch, name: &str, size: u64, cluster: u64, backing: &str, backing_fmt: &str) -> PathBuf {
    create(dir, name, size, Create { fmt: "qed", cluster: Some(cluster), table_size: None, backing: Some((backing, backing_fmt)) })
}

pub fn raw(dir: &Scratch, name: &str, size: u64) -> PathBuf {
    create(dir, name, size, Create { fmt: "raw", cluster: None, table_size: None, backing: None })
}

/// Run qemu-io commands on `name` (format `fmt`), many `-c` per process for speed.
/// Each command should carry `-q`; any "failed"/"error" line fails the test.
pub fn qemu_io(dir: &Scratch, fmt: &str, name: &str, cmds: &[String]) {
    for batch in cmds.chunks(400) {
        let mut args: Vec<String> = vec!["-f".into(), fmt.into()];
        for c in batch {
            args.push("-c".into());
            args.push(c.clone());
        }
        args.push(name.into());
        let refs: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
        let r = qemu(dir, "qemu-io", &refs).ok();
        let out = r.all().to_lowercase();
        assert!(!out.contains("failed") && !out.contains("error"), "qemu-io reported a problem on {}:\n{}", name, r.all());
    }
}

/// SplitMix64: a tiny seeded generator, so every run makes the same images.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-enough in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Write a file of pseudo-random bytes for `write -s` (an odd length, so the repeated
/// pattern never lines up with sectors or clusters).
pub fn pattern_file(dir: &Scratch, rng: &mut Rng) -> String {
    let name = "pattern.bin";
    fs::write(dir.path(name), rng.bytes(4093)).unwrap();
    name.into()
}

/// What the random-write generator may emit.
#[derive(Clone, Copy)]
pub struct Mix {
    pub writes: usize,
    /// Longest write, in 512-byte sectors.
    pub max_sectors: u64,
    /// Include `write -z` (aligned with -u and unaligned).
    pub zeroes: bool,
    /// Include `discard`.
    pub discards: bool,
}

/// Random qemu-io commands over `[0, size)`: many small writes at random 512-aligned
/// offsets and lengths, with a byte pattern or with the random pattern file, some zero
/// writes and discards. Offsets near cluster boundaries and the disk's end come up often.
pub fn random_commands(rng: &mut Rng, size: u64, cluster: u64, pattern: &str, mix: Mix) -> Vec<String> {
    let sectors = size / 512;
    let mut cmds = Vec::with_capacity(mix.writes);
    for i in 0..mix.writes {
        let sector = match rng.below(8) {
            // Right at or just before a cluster boundary.
            0 | 1 => {
                let c = rng.below(size.div_ceil(cluster));
                (c * cluster / 512).saturating_sub(rng.below(3)).min(sectors - 1)
            }
            // The last few sectors of the disk.
            2 => sectors - 1 - rng.below(sectors.min(16)),
            _ => rng.below(sectors),
        };
        let off = sector * 512;
        let len = ((1 + rng.below(mix.max_sectors)) * 512).min(size - off);
        let kind = rng.below(10);
        let c = if mix.zeroes && kind == 0 {
            // Whole clusters, so QED can store zero-cluster entries.
            let a = off / cluster * cluster;
            let n = (1 + rng.below(3)) * cluster;
            let n = n.min(size / cluster * cluster - a.min(size / cluster * cluster));
            if n == 0 {
                format!("write -q -z {} {}", off, len)
            } else {
                format!("write -q -z -u {} {}", a, n)
            }
        } else if mix.zeroes && kind == 1 {
            format!("write -q -z {} {}", off, len)
        } else if mix.discards && kind == 2 {
            format!("discard -q {} {}", off, len)
        } else if kind < 6 {
            format!("write -q -s {} {} {}", pattern, off, len)
        } else {
            // Patterns 1..=255, never 0, so a pattern write is never "all zero".
            format!("write -q -P {} {} {}", 1 + (i as u64 * 7 + rng.below(255)) % 255, off, len)
        };
        cmds.push(c);
    }
    cmds
}

/// Find the first differing byte of two files, and say where.
pub fn assert_same_bytes(ours: &Path, theirs: &Path, what: &str) {
    let a = fs::read(ours).unwrap_or_else(|e| panic!("{}: cannot read our output {}: {}", what, ours.display(), e));
    let b = fs::read(theirs).unwrap_or_else(|e| panic!("{}: cannot read qemu-img's output {}: {}", what, theirs.display(), e));
    if a == b {
        return;
    }
    let first = a.iter().zip(&b).position(|(x, y)| x != y);
    match first {
        Some(i) => panic!(
            "{}: raw output differs from qemu-img convert at byte {} (sector {}): ours {:#04x}, qemu {:#04x}; sizes ours {} / qemu {}",
            what, i, i / 512, a[i], b[i], a.len(), b.len()
        ),
        None => panic!("{}: raw output size differs: ours {} bytes, qemu-img convert {} bytes", what, a.len(), b.len()),
    }
}

/// `diskscope convert IMAGE OUT` and `qemu-img convert -O raw IMAGE OUT` must give the
/// same bytes. Returns our output's path.
pub fn convert_matches_qemu(dir: &Scratch, image: &Path, what: &str) -> PathBuf {
    let stem = image.file_name().unwrap().to_string_lossy().into_owned();
    let theirs = dir.path(&format!("{}.qemu.raw", stem));
    let ours = dir.path(&format!("{}.ours.raw", stem));
    qemu(dir, "qemu-img", &[&"convert", &"-O", &"raw", &image, &theirs]).ok();
    diskscope(&[&"convert", &image, &ours]).ok();
    assert_same_bytes(&ours, &theirs, what);
    ours
}

/// `diskscope map --json` must equal `qemu-img map --output=json`, entry for entry.
pub fn map_matches_qemu(dir: &Scratch, image: &Path, what: &str) {
    let theirs = qemu(dir, "qemu-img", &[&"map", &"--output=json", &image]).ok().json();
    let ours = diskscope(&[&"map", &image, &"--json"]).ok().json();
    if ours == theirs {
        return;
    }
    let (a, b) = (ours.as_array().cloned().unwrap_or_default(), theirs.as_array().cloned().unwrap_or_default());
    let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    panic!(
        "{}: map differs from qemu-img map at entry {} (ours has {} entries, qemu {})\nours: {}\nqemu: {}\nours (whole): {}\nqemu (whole): {}",
        what,
        i,
        a.len(),
        b.len(),
        a.get(i).map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        b.get(i).map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        short(&ours),
        short(&theirs)
    );
}

/// A JSON value for a failure message, cut short when it is huge.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 3000 {
        return s;
    }
    let mut end = 3000;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &s[..end], s.len() - end)
}

/// Both checks at once: the raw bytes and the map.
pub fn matches_qemu(dir: &Scratch, image: &Path, what: &str) -> PathBuf {
    map_matches_qemu(dir, image, what);
    convert_matches_qemu(dir, image, what)
}

/// Bytes the file really occupies on disk.
pub fn allocated_bytes(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

/// The QED header fields the tests need (FORMATS.md 5.2: all little-endian).
#[derive(Debug, Clone, Copy)]
pub struct QedHeader {
    pub cluster_size: u64,
    pub table_size: u64,
    pub header_size: u64,
    pub features: u64,
    pub l1_table_offset: u64,
    pub image_size: u64,
}

impl QedHeader {
    pub fn read(p: &Path) -> QedHeader {
        let b = fs::read(p).unwrap();
        assert_eq!(&b[0..4], b"QED\0", "{} is not a QED file", p.display());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64;
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        QedHeader {
            cluster_size: u32_at(4),
            table_size: u32_at(8),
            header_size: u32_at(12),
            features: u64_at(16),
            l1_table_offset: u64_at(40),
            image_size: u64_at(48),
        }
    }
    pub fn table_bytes(&self) -> u64 {
        self.table_size * self.cluster_size
    }
    /// Byte offset of L1 entry `i`.
    pub fn l1_entry(&self, i: u64) -> u64 {
        self.l1_table_offset + 8 * i
    }
}

pub fn read_u64(p: &Path, at: u64) -> u64 {
    let b = fs::read(p).unwrap();
    u64::from_le_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}

pub fn write_u64(p: &Path, at: u64, v: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&v.to_le_bytes()).unwrap();
}

pub fn append(p: &Path, bytes: &[u8]) {
    use std::io::Write;
    fs::OpenOptions::new().append(true).open(p).unwrap().write_all(bytes).unwrap();
}

pub fn set_len(p: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len).unwrap();
}

pub fn file_len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

/// A diskscope failure must be a message, not a crash.
pub fn assert_clean_failure(r: &Ran) {
    assert!(r.code.is_some() && r.code != Some(0), "`{}` should fail, got {:?}\nstdout:\n{}\nstderr:\n{}", r.what, r.code, r.stdout, r.stderr);
    assert!(!r.stderr.trim().is_empty(), "`{}` failed without a message on stderr", r.what);
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!r.all().contains(bad), "`{}` crashed instead of explaining ({}):\n{}", r.what, bad, r.all());
    }
}

/// `qemu-img create -q -f FMT [-o OPTS] NAME SIZE`, for formats with options of their own
/// (subformat=fixed, block_size=..., static=on).
pub fn create_with(dir: &Scratch, name: &str, size: u64, fmt: &str, opts: &str) -> PathBuf {
    let size = size.to_string();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create", &"-q", &"-f", &fmt];
    if !opts.is_empty() {
        args.extend([&"-o" as &dyn AsRef<std::ffi::OsStr>, &opts]);
    }
    args.extend([&name as &dyn AsRef<std::ffi::OsStr>, &size]);
    qemu(dir, "qemu-img", &args).ok();
    dir.path(name)
}

/// [`matches_qemu`] with the format named to qemu-img (`-f FMT`): a fixed VHD has no
/// header at its start, so qemu-img would probe it as raw.
pub fn matches_qemu_as(dir: &Scratch, image: &Path, fmt: &str, what: &str) -> PathBuf {
    let theirs = qemu(dir, "qemu-img", &[&"map", &"-f", &fmt, &"--output=json", &image]).ok().json();
    let ours = diskscope(&[&"map", &image, &"--json"]).ok().json();
    assert!(ours == theirs, "{}: map differs from qemu-img map -f {}\nours: {}\nqemu: {}", what, fmt, short(&ours), short(&theirs));
    let stem = image.file_name().unwrap().to_string_lossy().into_owned();
    let (q, o) = (dir.path(&format!("{}.qemu.raw", stem)), dir.path(&format!("{}.ours.raw", stem)));
    qemu(dir, "qemu-img", &[&"convert", &"-f", &fmt, &"-O", &"raw", &image, &q]).ok();
    diskscope(&[&"convert", &image, &o]).ok();
    assert_same_bytes(&o, &q, what);
    o
}

/// qemu-img check's exit code and JSON for `img` (format `fmt`), next to ours.
pub fn checks(dir: &Scratch, img: &Path, fmt: &str) -> ((Option<i32>, Value), (Option<i32>, Value)) {
    let q = qemu(dir, "qemu-img", &[&"check", &"-f", &fmt, &"--output=json", &img]);
    let o = diskscope(&[&"check", &img, &"--json"]);
    ((q.code, q.json()), (o.code, o.json()))
}
