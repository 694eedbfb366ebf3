//! `diskscope report`: the whole inspection in one JSON document. Each part must be exactly
//! what the single commands print for the same image (info --json, check --json of each
//! layer, map --json), and the map must also be qemu-img map's.
mod common;
use common::*;
use serde_json::Value;

/// `layers`: each layer's file and its format (a raw file is not probed as one).
fn report_parts_match(image: &std::path::Path, layers: &[(&std::path::Path, &str)]) -> Value {
    let r = diskscope(&[&"report", &image]).ok().json();
    assert_eq!(r["info"], diskscope(&[&"info", &"--json", &image]).ok().json(), "info");
    assert_eq!(r["map"], diskscope(&[&"map", &"--json", &image]).ok().json(), "map");
    let checks = r["checks"].as_array().expect("checks is an array");
    assert_eq!(checks.len(), layers.len(), "one check per layer");
    for (got, (layer, fmt)) in checks.iter().zip(layers) {
        let ran = diskscope(&[&"check", &"--json", &"-f", fmt, layer]);
        let mut want = ran.json();
        // check names a backing layer by the path given; the report by its name in the chain.
        want["filename"] = got["filename"].clone();
        assert_eq!(*got, want, "check of {}", layer.display());
    }
    r
}

#[test]
fn report_is_info_checks_and_map_of_a_chain() {
    let d = Scratch::new();
    let base = raw(&d, "base.raw", 4 * MIB);
    qemu_io(&d, "raw", "base.raw", &["write -q -P 7 0 4M".into()]);
    let top = create(&d, "top.qcow2", 8 * MIB, Create { fmt: "qcow2", cluster: None, table_size: None, backing: Some(("base.raw", "raw")) });
    qemu_io(&d, "qcow2", "top.qcow2", &["write -q -P 9 1M 64k".into(), "write -q -z 2M 64k".into()]);
    let r = report_parts_match(&top, &[(&top, "qcow2"), (&base, "raw")]);
    let qemu_map = qemu(&d, "qemu-img", &[&"map", &"--output=json", &"top.qcow2"]).ok().json();
    assert_eq!(r["map"], qemu_map, "the report's map is qemu-img map's");
    assert_eq!(r["info"]["backing-chain"][0]["format"], "raw");
    assert!(r.get("map-runs-dropped").is_none() && r.get("map-error").is_none());
}

#[test]
fn report_of_a_damaged_image_lists_its_findings_and_a_missing_backing_file() {
    let d = Scratch::new();
    raw(&d, "gone.raw", 4 * MIB);
    let img = qed_over(&d, "lonely.qed", 4 * MIB, 65536, "gone.raw", "raw");
    qemu_io(&d, "qed", "lonely.qed", &["write -q -P 1 0 64k".into()]);
    std::fs::remove_file(d.path("gone.raw")).unwrap();
    let r = report_parts_match(&img, &[(&img, "qed")]);
    let findings = r["checks"][0]["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["message"].as_str().unwrap_or("").contains("gone.raw")), "{}", short(&r["checks"][0]));
    assert!(r["map"].as_array().unwrap().iter().any(|e| e["missing"] == true));
}
