//! Every sample opens, reads and checks clean; where QEMU reads the format, its
//! `qemu-img convert -O raw` of the sample written to disk gives the same bytes as the core.
use alloc::{format, string::String, vec, vec::Vec};
use std::path::PathBuf;
use std::process::Command;

use super::*;

fn guest_bytes(chain: &Chain) -> Vec<u8> {
    let mut b = vec![0u8; chain.virtual_size() as usize];
    chain.read(0, &mut b).unwrap();
    b
}

#[test]
fn every_demo_opens_maps_and_checks_clean() {
    assert!(!all().is_empty());
    let mut names: Vec<&str> = all().iter().map(|d| d.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all().len(), "demo names are unique");
    for d in all() {
        let s = (d.build)();
        let chain = s.open().unwrap_or_else(|e| panic!("{}: {}", d.name, e));
        assert!(chain.broken.is_none(), "{}: the chain is whole: {:?}", d.name, chain.broken);
        assert_eq!(chain.layers.len(), s.files.iter().filter(|(n, _)| chain.layers.iter().any(|l| &l.name == n)).count());
        for l in &chain.layers {
            let r = l.image.check().unwrap_or_else(|e| panic!("{} {}: {}", d.name, l.name, e));
            assert_eq!((r.corruptions, r.leaks), (0, 0), "{} {}: {:?}", d.name, l.name, r.findings);
        }
        // A sample shows something: stored data, and some part of the disk that is not.
        let cells = chain.cells(4096).unwrap();
        let data = cells.totals[crate::map::class::DATA as usize];
        assert!(data > 0 && data < chain.virtual_size(), "{}: data {} of {}", d.name, data, chain.virtual_size());
        assert_eq!(cells.totals.iter().sum::<u64>(), chain.virtual_size(), "{}", d.name);
        guest_bytes(&chain);
        assert!(find(d.name).is_some());
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diskscope-samples-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn qemu_reads_each_sample_as_the_core_does() {
    let qemu = Command::new("qemu-img").arg("--version").output();
    assert!(qemu.is_ok_and(|o| o.status.success()), "qemu-img is needed (scripts/setup.sh installs qemu-utils)");
    let mut compared = Vec::new();
    for d in all() {
        let Some(fmt) = d.qemu else { continue };
        let s = (d.build)();
        let dir = scratch(d.name);
        for (n, b) in &s.files {
            std::fs::write(dir.join(n), b).unwrap();
        }
        let out = dir.join("out.raw");
        let o = Command::new("qemu-img").arg("convert").arg("-f").arg(fmt).arg("-O").arg("raw").arg(dir.join(s.top())).arg(&out).output().unwrap();
        assert!(o.status.success(), "{}: qemu-img convert failed: {}", d.name, String::from_utf8_lossy(&o.stderr));
        let theirs = std::fs::read(&out).unwrap();
        let ours = guest_bytes(&s.open().unwrap());
        assert_eq!(theirs.len(), ours.len(), "{}: disk sizes", d.name);
        let first = theirs.iter().zip(&ours).position(|(a, b)| a != b);
        assert!(first.is_none(), "{}: qemu-img and diskscope differ first at byte {:?}", d.name, first);
        std::fs::remove_dir_all(&dir).unwrap();
        compared.push(d.name);
    }
    assert!(!compared.is_empty());
}

#[test]
fn a_zoomed_window_has_the_whole_maps_cells_there() {
    for d in all() {
        let chain = (d.build)().open().unwrap();
        let unit = chain.top().info().cluster_size;
        let whole = chain.cells_at(unit, u64::MAX).unwrap();
        let n = whole.classes.len() as u64;
        // The middle half, cut at cell edges, at the same cell size.
        let (first, count) = (n / 4, (n / 2).max(1));
        let w = chain.cells_in(first * whole.cell_size, count * whole.cell_size, unit, u64::MAX).unwrap();
        assert_eq!(w.cell_size, whole.cell_size, "{}", d.name);
        assert_eq!(w.classes, whole.classes[first as usize..(first + count) as usize], "{}", d.name);
        assert_eq!(w.totals.iter().sum::<u64>(), (count * whole.cell_size).min(chain.virtual_size() - first * whole.cell_size), "{}", d.name);
        // Fewer cells allowed: cells twice as large, still starting at the window.
        let half = chain.cells_in(first * whole.cell_size, count * whole.cell_size, unit, count.div_ceil(2)).unwrap();
        assert_eq!(half.cell_size, 2 * whole.cell_size, "{}", d.name);
        assert_eq!(half.totals, w.totals, "{}", d.name);
    }
}

#[test]
fn cluster_fields_agree_with_the_map() {
    let mut described = Vec::new();
    for d in all() {
        let chain = (d.build)().open().unwrap();
        let top = chain.top();
        let mut ext = Vec::new();
        top.map(0, chain.virtual_size(), &mut ext).unwrap();
        for e in &ext {
            let fields = top.cluster_fields(e.start).unwrap();
            if fields.is_empty() {
                continue;
            }
            let text = fields.iter().map(|f| f.value.as_str()).collect::<Vec<_>>().join("; ");
            match e.kind {
                crate::model::Kind::Unallocated => assert!(
                    text.contains("clear") || text.contains("unallocated") || text.contains("never written") || text.contains("no L2 table"),
                    "{} at {}: {}", d.name, e.start, text
                ),
                crate::model::Kind::Compressed { .. } => assert!(text.starts_with("compressed: "), "{}: {}", d.name, text),
                crate::model::Kind::Data { .. } => assert!(text.starts_with("set") || text.contains("; set: ") || text.starts_with("data at byte") || text.contains("data block"), "{} at {}: {}", d.name, e.start, text),
                _ => {}
            }
            // Each field's bytes are the file's bytes at its offset.
            let file = top.file(0).unwrap();
            for f in &fields {
                let mut b = vec![0u8; f.raw.len()];
                file.read_at(f.offset, &mut b).unwrap();
                assert_eq!(b, f.raw, "{} {}", d.name, f.name);
            }
            described.push(d.name);
        }
    }
    for f in ["qcow2", "qed", "gow", "cow", "add-cow", "vpc", "vdi"] {
        assert!(described.contains(&f), "{} describes its clusters", f);
    }
}

/// Every demo as a fuzz seed for its format's target (scripts/fuzz.sh sets the folder): the
/// top image, then its companions, which a target finds by identity (UUID, CID) but not by
/// name (the targets name their files a, b, c, d). The stored guest data is zeroed, so
/// that the metadata fits the targets' input length in the sparse form.
#[test]
fn fuzz_seeds_from_every_demo() {
    for d in all() {
        let s = (d.build)();
        let chain = s.open().unwrap();
        let mut files: Vec<Vec<u8>> = s.files.iter().map(|(_, b)| b.clone()).collect();
        chain
            .for_each_entry(|e| {
                let file = s.files.iter().position(|(n, _)| *n == chain.layers[e.depth as usize].name);
                if let (Some(off), true, false, 0, Some(i)) = (e.offset, e.data, e.compressed, e.file, file) {
                    let f = &mut files[i];
                    let (a, b) = ((off as usize).min(f.len()), ((off + e.length) as usize).min(f.len()));
                    f[a..b].fill(0);
                }
                Ok(())
            })
            .unwrap();
        let files: Vec<&[u8]> = files.iter().map(|b| b.as_slice()).collect();
        let target = format!("fmt_{}", chain.top().info().format.replace('-', ""));
        crate::testutil::fuzz_seed(&target, &format!("demo-{}", d.name), &files);
    }
}

/// Each format's run granule is a true lower bound on its runs (a walk sizes its windows by
/// it): in every demo, each layer's map of its whole disk has no run shorter but the last.
/// And the walk, whatever its window, gives the runs of one whole-disk map.
/// `Image::runs_end` may tell a walk to go far, but never further than its budget of runs.
#[test]
fn a_step_never_holds_more_runs_than_its_budget() {
    for d in all() {
        crate::testutil::assert_steps_hold_their_budget(d.name, &(d.build)().open().unwrap());
    }
}

#[test]
fn no_run_is_shorter_than_its_formats_run_granule() {
    let mut coarse = Vec::new();
    for d in all() {
        let chain = (d.build)().open().unwrap();
        for layer in &chain.layers {
            let image = &layer.image;
            let g = image.run_granule();
            let mut ext = Vec::new();
            image.map(0, image.info().virtual_size, &mut ext).unwrap();
            let short: Vec<_> = ext.iter().rev().skip(1).filter(|e| e.length < g).collect();
            assert!(short.is_empty(), "{} ({}): runs shorter than its granule {}: {:?}", d.name, layer.name, g, short);
            if g > 512 {
                coarse.push(image.info().format);
            }
        }
        let mut whole = Vec::new();
        chain.map(0, chain.virtual_size(), &mut whole).unwrap();
        let mut walked: Vec<crate::map::MapEntry> = Vec::new();
        chain
            .for_each_entry(|e| {
                walked.push(*e);
                Ok(())
            })
            .unwrap();
        assert_eq!(walked, whole, "{}", d.name);
    }
    for f in ["qcow2", "qed", "qcow", "vdi", "parallels", "gow", "fvd", "add-cow", "raw"] {
        assert!(coarse.contains(&f), "{} has runs coarser than a sector: {:?}", f, coarse);
    }
}
