//! GOW v1, v2 and v3 through the CLI. No tool writes GOW (no driver code was ever
//! published), so images are written by the core tests' writer (the table in DECISIONS.md 4),
//! as sparse files, and the expected disk comes from its model of what was written.
mod common;

use common::*;
use diskscope_core::formats::gow::sample::{table, Writer as Gow, B};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Logical block `i` written with random bytes (none zero, so no run reads as a hole).
fn write(g: &mut Gow, i: u64, rng: &mut Rng, version: u32) {
    g.write_bytes(i, rng.bytes(B as usize).into_iter().map(|b| b | 1).collect(), version);
}

/// The image as a sparse file on disk (a v3 header alone is 32 MiB).
fn save(g: &Gow, path: &Path) {
    let sparse = g.file();
    let f = fs::File::create(path).unwrap();
    f.set_len(sparse.size).unwrap();
    for (at, bytes) in &sparse.chunks {
        f.write_all_at(bytes, *at).unwrap();
    }
}

/// `blocks` whole blocks and `tail` bytes, about 3 in 4 written, in a shuffled order.
fn shuffled(version: u8, blocks: u64, tail: u64, rng: &mut Rng) -> Gow {
    let mut g = Gow::new(version, blocks * B + tail);
    let total = g.size.div_ceil(B);
    let mut order: Vec<u64> = (0..total).filter(|_| rng.below(4) != 0).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (n, &i) in order.iter().enumerate() {
        write(&mut g, i, rng, 1 + n as u32 / 4);
    }
    g
}

fn convert_equals(dir: &Scratch, image: &Path, model: &[u8], what: &str) {
    let out = dir.path("out.raw");
    diskscope(&[&"convert", &image, &out]).ok();
    let got = fs::read(&out).unwrap();
    assert_eq!(got.len(), model.len(), "{}: output size", what);
    if let Some(i) = got.iter().zip(model).position(|(a, b)| a != b) {
        panic!("{}: first difference at byte {} (got {:#x}, want {:#x})", what, i, got[i], model[i]);
    }
}

#[test]
fn every_version_converts_and_maps_as_the_model_says() {
    for version in 1..=3u8 {
        for (blocks, tail, cut) in [(29u64, 7 * 512u64, 0u64), (12, 0, 3000), (5, 40_960, B - 512)] {
            let what = format!("GOW{} {} blocks + {} bytes, last block {} bytes short", version, blocks, tail, cut);
            let dir = Scratch::new();
            let mut rng = Rng::new(version as u64 * 100 + blocks);
            let mut g = shuffled(version, blocks, tail, &mut rng);
            if cut > 0 {
                g.cut_last(cut);
            }
            let img = dir.path("disk.gow");
            save(&g, &img);
            convert_equals(&dir, &img, &g.model, &what);
            // Each logical block maps to D + (k-1) * 64 KiB, read back from the file's own map.
            let (_, _, d) = table(version);
            let file = fs::read(&img).unwrap();
            let eof = file.len() as u64;
            let map = diskscope(&[&"map", &"--json", &img]).ok().json();
            let mut expect = Vec::new();
            let mut i = 0;
            while i * B < g.size {
                let k = u32::from_le_bytes(file[24 + 4 * i as usize..28 + 4 * i as usize].try_into().unwrap()) as u64;
                let length = B.min(g.size - i * B);
                let at = d + k.max(1) * B - B;
                if k == 0 {
                    expect.push(json!({"start": i * B, "length": length, "depth": 0, "present": false, "zero": true, "data": false, "compressed": false}));
                } else if at + length <= eof {
                    expect.push(json!({"start": i * B, "length": length, "depth": 0, "present": true, "zero": false, "data": true, "compressed": false, "offset": at}));
                } else {
                    // The short last block: stored up to the end of the file, then a host hole.
                    let stored = eof - at;
                    expect.push(json!({"start": i * B, "length": stored, "depth": 0, "present": true, "zero": false, "data": true, "compressed": false, "offset": at}));
                    expect.push(json!({"start": i * B + stored, "length": length - stored, "depth": 0, "present": true, "zero": true, "data": true, "compressed": false, "offset": eof}));
                }
                i += 1;
            }
            assert_eq!(merge(expect), map, "{}", what);
            let check = diskscope(&[&"check", &"--json", &img]);
            assert_eq!(check.code, Some(0), "{}: {}", what, check.all());
            let codes: Vec<String> = check.json()["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_string()).collect();
            assert_eq!(codes.contains(&"short-final-block".to_string()), cut > 0, "{}: {:?}", what, codes);
        }
    }
}

/// Join map runs as qemu-img map does: same flags, contiguous offsets.
fn merge(runs: Vec<Value>) -> Value {
    let mut out: Vec<Value> = Vec::new();
    for r in runs {
        if let Some(last) = out.last_mut() {
            let same = ["present", "zero", "data"].iter().all(|k| last[k] == r[k]);
            let follows = match (last["offset"].as_u64(), r["offset"].as_u64()) {
                (None, None) => true,
                (Some(a), Some(b)) => a + last["length"].as_u64().unwrap() == b,
                _ => false,
            };
            if same && follows {
                last["length"] = json!(last["length"].as_u64().unwrap() + r["length"].as_u64().unwrap());
                continue;
            }
        }
        out.push(r);
    }
    Value::Array(out)
}

#[test]
fn info_says_reconstructed_and_shows_the_header_and_the_versions() {
    let dir = Scratch::new();
    let mut rng = Rng::new(5);
    let mut g = Gow::new(3, 10 * B);
    g.flags = 1;
    for (i, v) in [(4, 2), (0, 2), (9, 5), (1, 5), (2, 5)] {
        write(&mut g, i, &mut rng, v);
    }
    let img = dir.path("gold.gow");
    save(&g, &img);
    let info = diskscope(&[&"info", &"--json", &img]).ok().json();
    assert_eq!((info["format"].as_str(), info["layout"].as_str(), info["virtual-size"].as_u64()), (Some("gow"), Some("reconstructed"), Some(10 * B)));
    assert!(info["variant"].as_str().unwrap().contains("reconstructed from the published description (no driver code was ever published)"));
    let fields: Vec<(String, u64, u64)> = info["header-fields"].as_array().unwrap().iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["offset"].as_u64().unwrap(), f["size"].as_u64().unwrap())).collect();
    let n = 1u64 << 22;
    let want: Vec<(String, u64, u64)> = [("magic", 0, 4), ("flags", 4, 4), ("virtual size", 8, 8), ("allocated blocks", 16, 4), ("session", 20, 4), ("block map", 24, 4 * n), ("block versions", 24 + 4 * n, 4 * n)]
        .into_iter().map(|(a, b, c)| (a.to_string(), b, c)).collect();
    assert_eq!(fields, want);
    assert_eq!(info["header-fields"][1]["value"], "read-only (gold image)");
    assert_eq!(info["header-fields"][3]["raw"], "05000000");
    assert_eq!(info["header-fields"][5]["raw"], "02000000040000000500000000000000", "logical block 0 was written second, 1 fourth, 2 fifth");
    assert_eq!(info["version-histogram"], json!({"granularity": B, "blocks": 10, "versions": [
        {"version": 0, "blocks": 5, "bytes": 5 * B},
        {"version": 2, "blocks": 2, "bytes": 2 * B},
        {"version": 5, "blocks": 3, "bytes": 3 * B},
    ]}));
    let text = diskscope(&[&"info", &img]).ok().stdout;
    assert!(text.contains("RECONSTRUCTED") && text.contains("block versions (10 blocks of 64 KiB):"), "{}", text);
    assert!(text.lines().any(|l| l.split_whitespace().take(2).eq(["5", "3"])), "{}", text);
    // A GOW2 image has no versions: no histogram.
    let mut g2 = Gow::new(2, 4 * B);
    write(&mut g2, 1, &mut rng, 0);
    save(&g2, &dir.path("user.gow"));
    let info = diskscope(&[&"info", &"--json", &dir.path("user.gow")]).ok().json();
    assert!(info.get("version-histogram").is_none());
    assert!(info["variant"].as_str().unwrap().starts_with("GOW2"));
}

/// A master and a local copy of one disk: (master, local, expected delta sets).
fn pair(rng: &mut Rng) -> (Gow, Gow) {
    let size = 12 * B + 2048;
    let (mut m, mut l) = (Gow::new(3, size), Gow::new(3, size));
    for i in [3, 1, 0, 2, 7] {
        write(&mut m, i, rng, 4);
    }
    for i in [0, 1, 2, 3, 7] {
        write(&mut l, i, rng, 4);
    }
    write(&mut m, 1, rng, 6); // fetch block 1
    write(&mut m, 12, rng, 6); // fetch the short last block, not on the local side
    write(&mut m, 8, rng, 5);
    write(&mut l, 10, rng, 2); // only local
    write(&mut l, 3, rng, 9); // newer locally
    (m, l)
}

#[test]
fn delta_names_the_blocks_to_fetch_and_the_rest() {
    let dir = Scratch::new();
    let mut rng = Rng::new(9);
    let (m, l) = pair(&mut rng);
    let (mp, lp) = (dir.path("master.gow"), dir.path("local.gow"));
    save(&m, &mp);
    save(&l, &lp);
    let size = m.size;
    let run = |first: u64, blocks: u64, mv: u32, lv: u32| {
        json!({"first-block": first, "blocks": blocks, "start": first * B, "length": (blocks * B).min(size - first * B), "master-version": mv, "local-version": lv})
    };
    let got = diskscope(&[&"delta", &mp, &lp, &"--json"]).ok().json();
    let want = json!({
        "master": mp.display().to_string(),
        "local": lp.display().to_string(),
        "granularity": B,
        "virtual-size": size,
        "blocks": 13,
        "master-newer": {"blocks": 3, "bytes": 2 * B + 2048, "runs": [run(1, 1, 6, 4), run(8, 1, 5, 0), run(12, 1, 6, 0)], "runs-dropped": 0},
        "local-newer": {"blocks": 2, "bytes": 2 * B, "runs": [run(3, 1, 4, 9), run(10, 1, 0, 2)], "runs-dropped": 0},
        "master-only": {"blocks": 2, "bytes": B + 2048, "runs": [run(8, 1, 5, 0), run(12, 1, 6, 0)], "runs-dropped": 0},
        "local-only": {"blocks": 1, "bytes": B, "runs": [run(10, 1, 0, 2)], "runs-dropped": 0},
    });
    assert_eq!(got, want, "\n got: {}\nwant: {}", got, want);
    let text = diskscope(&[&"delta", &mp, &lp]).ok().stdout;
    assert!(text.contains("newer on the master (to fetch): 3 blocks, 130 KiB (133120 bytes)"), "{}", text);
    assert!(text.contains("stored on the local side only: 1 block, 64 KiB (65536 bytes)"), "{}", text);
}

#[test]
fn delta_refuses_other_sizes_and_images_without_versions() {
    let dir = Scratch::new();
    let mut rng = Rng::new(11);
    let (m, _) = pair(&mut rng);
    save(&m, &dir.path("master.gow"));
    let mut other = Gow::new(3, 20 * B);
    write(&mut other, 0, &mut rng, 1);
    save(&other, &dir.path("big.gow"));
    let r = diskscope(&[&"delta", &dir.path("master.gow"), &dir.path("big.gow")]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains(&format!("the master disk is {} bytes and the local disk {} bytes", m.size, 20 * B)), "{}", r.stderr);
    let mut v2 = Gow::new(2, m.size);
    write(&mut v2, 0, &mut rng, 0);
    save(&v2, &dir.path("user.gow"));
    let r = diskscope(&[&"delta", &dir.path("master.gow"), &dir.path("user.gow"), &"--json"]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("the local image (GOW2") && r.stderr.contains("keeps no block versions"), "{}", r.stderr);
}

#[test]
fn check_reports_hostile_maps_at_their_entries() {
    let dir = Scratch::new();
    let mut rng = Rng::new(13);
    let mut g = Gow::new(2, 8 * B);
    for i in 0..4 {
        write(&mut g, i, &mut rng, 0);
    }
    g.map.insert(5, 40); // past the end of the file
    g.map.insert(6, 2); // shares data block 1 with logical block 1
    let img = dir.path("bad.gow");
    save(&g, &img);
    let r = diskscope(&[&"check", &"--json", &img]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    let found: Vec<(String, u64)> = r.json()["findings"].as_array().unwrap().iter()
        .filter(|f| f["severity"] == "corruption")
        .map(|f| (f["code"].as_str().unwrap().to_string(), f["offset"].as_u64().unwrap())).collect();
    assert_eq!(found, vec![("block-past-eof".to_string(), 24 + 4 * 5), ("block-shared".to_string(), 24 + 4 * 6), ("count-vs-map".to_string(), 16)]);
    // Converting fails at the entry past the end, and says where it is.
    let c = diskscope(&[&"convert", &img, &dir.path("o.raw")]);
    assert_clean_failure(&c);
    assert!(c.stderr.contains("invalid entry at byte 44"), "{}", c.stderr);
    // A size the map cannot address is refused with the field's offset.
    let mut big = Gow::new(1, 0);
    big.size = (64 << 30) + 512;
    big.model = Vec::new();
    save(&big, &dir.path("big.gow"));
    let r = diskscope(&[&"info", &dir.path("big.gow")]);
    assert_clean_failure(&r);
    assert!(r.stderr.contains("(byte 8)"), "{}", r.stderr);
}
