//! `diskscope`: the core on the command line. JSON output uses qemu-img's field names
//! where qemu-img has the same concept, so the two can be compared directly.
use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use diskscope_core::compare::compare;
use diskscope_core::report::Report;
use diskscope_core::Chain;

mod convert;
mod delta;
mod native;
mod snapshot;
mod text;
use native::{DirResolver, HostFile};

#[derive(Parser)]
#[command(name = "diskscope", version, about = "Look inside virtual-disk images (read-only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Show journal or log metadata as stored, without applying pending records in memory
    /// (FVD's journal, VHDX's log). The image file is never written either way.
    #[arg(long, global = true)]
    as_stored: bool,
}

/// The image a command reads and how to read it.
#[derive(Args)]
struct ImageArgs {
    image: PathBuf,
    /// Image format (default: probe).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
}

/// An internal snapshot to read instead of the current state (qcow2), as qemu-img's -l.
#[derive(Args)]
struct SnapshotArg {
    /// Read an internal snapshot (qcow2) as qemu-img -l does: SNAPSHOT (ID or name),
    /// snapshot.name=N or snapshot.id=I.
    #[arg(short = 'l')]
    snapshot: Option<String>,
}

impl ImageArgs {
    fn open(&self, snapshot: &SnapshotArg) -> Result<Chain> {
        snapshot::open(&self.image, self.format.as_deref(), snapshot.snapshot.as_deref(), OPTIONS.get_or_init(Default::default))
    }
}

/// How every image on the command line is opened.
static OPTIONS: std::sync::OnceLock<diskscope_core::image::OpenOptions> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Command {
    /// Format, header fields with offsets and meanings, backing chain.
    Info {
        #[command(flatten)]
        image: ImageArgs,
        #[arg(long)]
        json: bool,
    },
    /// Where every guest byte comes from (qemu-img map's runs).
    Map {
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        snapshot: SnapshotArg,
        #[arg(long)]
        json: bool,
    },
    /// Consistency check; exit 0 clean, 2 corruption, 3 leaked clusters only.
    Check {
        #[command(flatten)]
        image: ImageArgs,
        #[arg(long)]
        json: bool,
    },
    /// Write the disk, through its backing chain, as a raw image (zero runs left as holes).
    Convert {
        #[command(flatten)]
        image: ImageArgs,
        output: PathBuf,
        /// Output format: only raw.
        #[arg(short = 'O', default_value = "raw")]
        output_format: String,
        /// Show progress even when stderr is not a terminal.
        #[arg(short = 'p')]
        progress: bool,
        #[command(flatten)]
        snapshot: SnapshotArg,
    },
    /// Compare what two disks contain; exit 0 identical, 1 different, 2 error.
    /// A file in no known format is compared as raw, as qemu-img does.
    Compare {
        a: PathBuf,
        b: PathBuf,
        #[arg(short = 'f')]
        format_a: Option<String>,
        #[arg(short = 'F')]
        format_b: Option<String>,
    },
    /// The whole inspection as one JSON document (the page's "JSON report"): `info`
    /// (as info --json), `checks` (check --json of each layer, top first) and `map` (map
    /// --json's runs). JSON is its only output; --json is accepted for symmetry.
    Report {
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        snapshot: SnapshotArg,
        #[arg(long)]
        json: bool,
    },
    /// Blocks a local copy must fetch from its master (newer block versions, GOW3), blocks
    /// newer on the local side, and blocks stored on one side only.
    Delta {
        master: PathBuf,
        local: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn open(path: &Path, format: Option<&str>) -> Result<Chain> {
    let file = HostFile::open(path).with_context(|| format!("cannot open '{}'", path.display()))?;
    let name = native::key(path);
    let options = OPTIONS.get_or_init(Default::default);
    Chain::open_with(&name, Arc::new(file), format, &DirResolver, options).with_context(|| format!("cannot read '{}'", path.display()))
}

/// Open as the named format, or as probed, or else as raw.
fn open_or_raw(path: &Path, format: Option<&str>) -> Result<Chain> {
    match open(path, format) {
        Err(e) if format.is_none() && matches!(e.downcast_ref(), Some(diskscope_core::Error::UnknownFormat { .. })) => open(path, Some("raw")),
        r => r,
    }
}

/// The file a map run is stored in: a layer's image, or one of its companions (a data or
/// extent file).
fn display_name(chain: &Chain, depth: usize, file: u16, top: &Path) -> String {
    let layer = &chain.layers[depth];
    if let Some(c) = file.checked_sub(1).and_then(|k| layer.image.info().companions.get(k as usize)) {
        return c.found.clone().unwrap_or_else(|| c.name.clone());
    }
    if depth == 0 {
        top.display().to_string()
    } else {
        layer.name.clone()
    }
}

fn progress_bar(total: u64, force: bool, what: &str) -> indicatif::ProgressBar {
    if !force && !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn run(cli: Cli) -> Result<u8> {
    // Rust's stdout flushes at every newline, even into a pipe or file: a map of millions of
    // runs was millions of write calls (13 s for 5 million lines, 8 s of it in the kernel).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let code = run_command(cli, &mut out)?;
    out.flush()?;
    Ok(code)
}

fn run_command(cli: Cli, mut out: impl Write) -> Result<u8> {
    match cli.command {
        Command::Info { image, json } => {
            let chain = open(&image.image, image.format.as_deref())?;
            let mut report = Report::new(&chain)?;
            report.top.filename = image.image.display().to_string();
            let versions = diskscope_core::delta::histogram(chain.top())?;
            if json {
                snapshot::info_json(&mut out, chain.top(), |w| delta::info_json(w, &report, versions.as_ref()))?;
            } else {
                text::info(&mut out, &report)?;
                snapshot::info_text(&mut out, chain.top())?;
                delta::histogram(&mut out, versions.as_ref())?;
            }
        }
        Command::Map { image, json, snapshot } => {
            let chain = image.open(&snapshot)?;
            let name = |d, f| display_name(&chain, d, f, &image.image);
            let mut printer = text::MapPrinter::start(&mut out, json, &name)?;
            // A failed write (a closed pipe) stops the walk and is the error reported.
            let mut write_error = None;
            let walked = chain.for_each_entry(|e| {
                printer.run(e).map_err(|err| {
                    write_error = Some(err);
                    diskscope_core::Error::Cancelled
                })
            });
            if let Some(err) = write_error {
                return Err(err.into());
            }
            walked?;
            printer.finish()?;
            if let Some(b) = &chain.broken {
                out.flush()?; // the warning follows the map, as it did unbuffered
                eprintln!("warning: {}", b.finding().message);
            }
        }
        Command::Check { image, json } => {
            let chain = open(&image.image, image.format.as_deref())?;
            let mut result = chain.top().check()?;
            if let Some(b) = &chain.broken {
                result.add(b.finding());
            }
            if json {
                text::check_json(&mut out, &image.image, chain.top().info().format, &result)?;
            } else {
                text::check(&mut out, &result)?;
            }
            return Ok(result.exit_code() as u8);
        }
        Command::Convert { image, output, output_format, progress, snapshot } => {
            if output_format != "raw" {
                bail!("only raw output is supported (-O raw)");
            }
            let chain = image.open(&snapshot)?;
            let size = chain.virtual_size();
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&output)
                .with_context(|| format!("cannot create '{}'", output.display()))?;
            file.set_len(size)?;
            let pb = progress_bar(size, progress, "converting");
            let reopen = || image.open(&snapshot);
            convert::convert(&chain, &reopen, &file, &mut |done| pb.set_position(done))?;
            pb.finish_and_clear();
        }
        Command::Report { image, snapshot, json: _ } => {
            let chain = image.open(&snapshot)?;
            let inspection = diskscope_core::report::Inspection::new(&chain, &image.image.display().to_string())?;
            serde_json::to_writer_pretty(&mut out, &inspection)?;
            writeln!(out)?;
        }
        Command::Delta { master, local, json } => {
            let (m, l) = (open(&master, None)?, open(&local, None)?);
            delta::run(&mut out, &master, &local, &m, &l, json)?;
        }
        Command::Compare { a, b, format_a, format_b } => {
            let (ca, cb) = (open_or_raw(&a, format_a.as_deref())?, open_or_raw(&b, format_b.as_deref())?);
            if ca.virtual_size() != cb.virtual_size() {
                writeln!(out, "Warning: Image size mismatch!")?;
            }
            let pb = progress_bar(ca.virtual_size().max(cb.virtual_size()), false, "comparing");
            let r = compare(&ca, &cb, &mut |done, _| {
                pb.set_position(done);
                true
            })?;
            pb.finish_and_clear();
            match r.mismatch_offset {
                None => writeln!(out, "Images are identical.")?,
                Some(off) => {
                    writeln!(out, "Content mismatch at offset {}!", off)?;
                    return Ok(1);
                }
            }
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = OPTIONS.set(diskscope_core::image::OpenOptions { as_stored: cli.as_stored, snapshot: None });
    let is_compare = matches!(cli.command, Command::Compare { .. });
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) => {
            ExitCode::SUCCESS // the reader (head, less) stopped reading: not our error
        }
        Err(e) => {
            eprintln!("diskscope: {:#}", e);
            ExitCode::from(if is_compare { 2 } else { 1 })
        }
    }
}
