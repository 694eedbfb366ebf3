//! Internal snapshots on the command line: `-l` as qemu-img convert takes it, and the
//! snapshot list of `info` (qemu-img info's "snapshots" in JSON, its table in text).
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use diskscope_core::image::OpenOptions;
use diskscope_core::{Chain, Image, Snapshot};

use crate::native::{self, DirResolver, HostFile};

/// What `-l` names: `snapshot.name=N`, `snapshot.id=I` (either or both, comma-separated),
/// or a bare string that is tried as an ID and then as a name.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub either: Option<String>,
}

pub fn parse(arg: &str) -> Result<Spec> {
    if !arg.starts_with("snapshot.") {
        return Ok(Spec { id: None, name: None, either: Some(arg.to_string()) });
    }
    let mut spec = Spec { id: None, name: None, either: None };
    for part in arg.split(',') {
        match part.split_once('=') {
            Some(("snapshot.id", v)) => spec.id = Some(v.to_string()),
            Some(("snapshot.name", v)) => spec.name = Some(v.to_string()),
            _ => bail!("-l takes SNAPSHOT, snapshot.name=NAME or snapshot.id=ID (got '{}')", part),
        }
    }
    Ok(spec)
}

fn matches(s: &Snapshot, spec: &Spec) -> bool {
    match (&spec.id, &spec.name, &spec.either) {
        (_, _, Some(x)) => &s.id == x || &s.name == x,
        (id, name, None) => id.as_ref().is_none_or(|i| &s.id == i) && name.as_ref().is_none_or(|n| &s.name == n),
    }
}

fn list(snaps: &[Snapshot]) -> String {
    if snaps.is_empty() {
        return String::from("it has no internal snapshots");
    }
    let names: Vec<String> = snaps.iter().map(|s| format!("{} \"{}\"", s.id, s.name)).collect();
    format!("it has {}", names.join(", "))
}

/// Open `path` as its snapshot `arg` (or as the current disk when there is none). The
/// snapshot is found in the top image as `qemu-img convert -l` finds it, and opened by
/// its unique ID.
pub fn open(path: &Path, format: Option<&str>, arg: Option<&str>, options: &OpenOptions) -> Result<Chain> {
    let open_with = |snapshot: Option<String>| -> Result<Chain> {
        let file = HostFile::open(path).with_context(|| format!("cannot open '{}'", path.display()))?;
        let options = OpenOptions { snapshot, ..options.clone() };
        Chain::open_with(&native::key(path), Arc::new(file), format, &DirResolver, &options)
            .with_context(|| format!("cannot read '{}'", path.display()))
    };
    let chain = match arg {
        None => open_with(None)?,
        Some(arg) => {
            let spec = parse(arg)?;
            let current = open_with(None)?;
            let snaps = current.top().snapshots();
            let Some(found) = snaps.iter().find(|s| matches(s, &spec)) else {
                bail!("'{}' has no snapshot matching '{}': {}", path.display(), arg, list(&snaps));
            };
            open_with(Some(found.id.clone()))?
        }
    };
    // A disk whose data cannot be read at all (encrypted) says so before any output exists.
    let mut probe = Vec::new();
    chain.map(0, chain.virtual_size().min(1), &mut probe).with_context(|| format!("cannot read '{}'", path.display()))?;
    Ok(chain)
}

/// qemu-img's VM clock: hours:minutes:seconds.milliseconds.
fn vm_clock(s: &Snapshot) -> String {
    let t = s.vm_clock_sec;
    format!("{:04}:{:02}:{:02}.{:03}", t / 3600, t / 60 % 60, t % 60, s.vm_clock_nsec / 1_000_000)
}

/// The snapshot table of `info`, as qemu-img prints it (dates in UTC).
pub fn info_text(out: &mut dyn Write, image: &dyn Image) -> Result<()> {
    let snaps = image.snapshots();
    if snaps.is_empty() {
        return Ok(());
    }
    writeln!(out, "Snapshot list:")?;
    writeln!(out, "{:<7} {:<17} {:>7} {:>23} {:>15} {:>10} {:>12}  {}", "ID", "TAG", "VM_SIZE", "DATE", "VM_CLOCK", "ICOUNT", "DISK_SIZE", "L1 TABLE")?;
    for s in &snaps {
        let date = diskscope_core::formats::fmt::unix_time(s.date_sec as i64);
        writeln!(
            out,
            "{:<7} {:<17} {:>7} {:>23} {:>15} {:>10} {:>12}  {} entries at {:#x}",
            s.id,
            s.name,
            crate::text::human(s.vm_state_size),
            date.trim_end_matches(" UTC"),
            vm_clock(s),
            s.icount.map(|i| i.to_string()).unwrap_or_default(),
            s.virtual_size.map(crate::text::human).unwrap_or_else(|| String::from("-")),
            s.l1_size,
            s.l1_table_offset
        )?;
    }
    writeln!(out, "(dates in UTC)")?;
    Ok(())
}

/// `info --json`: what `write` prints, plus qemu-img info's "snapshots" array when the
/// top image has snapshots.
pub fn info_json(out: &mut dyn Write, image: &dyn Image, write: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
    let mut buf = Vec::new();
    write(&mut buf)?;
    let snaps = image.snapshots();
    if snaps.is_empty() {
        out.write_all(&buf)?;
        return Ok(());
    }
    // Splice the array in before the object's closing brace, keeping the keys' order.
    let text = String::from_utf8(buf)?;
    let body = text.trim_end().strip_suffix('}').context("info JSON is not an object")?.trim_end();
    let array = serde_json::to_string_pretty(&snaps)?.replace('\n', "\n  ");
    writeln!(out, "{},\n  \"snapshots\": {}\n}}", body, array)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse("one").unwrap(), Spec { id: None, name: None, either: Some("one".into()) });
        assert_eq!(parse("snapshot.name=a b").unwrap(), Spec { id: None, name: Some("a b".into()), either: None });
        assert_eq!(parse("snapshot.id=2,snapshot.name=x").unwrap(), Spec { id: Some("2".into()), name: Some("x".into()), either: None });
        assert!(parse("snapshot.foo=1").is_err());
    }
}
