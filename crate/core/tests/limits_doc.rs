//! docs/limits.md lists every limit in crate/core/src/limits.rs with its value: a limit
//! added or changed without the page fails here.
use diskscope_core::limits::*;

/// Each limit's value, by name. A name in limits.rs missing here fails the test too, so a
/// new limit cannot skip this list (and with it the page).
fn value(name: &str) -> Option<u64> {
    Some(match name {
        "MAX_METADATA_BYTES" => MAX_METADATA_BYTES,
        "MAX_TABLE_BYTES" => MAX_TABLE_BYTES,
        "SPAN_CACHE_BYTES" => SPAN_CACHE_BYTES as u64,
        "COALESCE_GAP" => COALESCE_GAP,
        "MAX_COALESCED_READ" => MAX_COALESCED_READ,
        "MAX_CHAIN_DEPTH" => MAX_CHAIN_DEPTH as u64,
        "MAX_VIRTUAL_SIZE" => MAX_VIRTUAL_SIZE,
        "MAX_NESTING" => MAX_NESTING as u64,
        "MAX_CANDIDATES" => MAX_CANDIDATES as u64,
        "MAX_NAME_BYTES" => MAX_NAME_BYTES,
        "MAX_FINDINGS" => MAX_FINDINGS as u64,
        "MAX_MAP_CELLS" => MAX_MAP_CELLS,
        "MAP_WINDOW_RUNS" => MAP_WINDOW_RUNS,
        "MAX_REPORT_MAP_RUNS" => MAX_REPORT_MAP_RUNS as u64,
        "MAX_OPEN_READS" => MAX_OPEN_READS,
        "MAX_OPEN_BYTES" => MAX_OPEN_BYTES,
        _ => return None,
    })
}

/// 67108864 as the page writes it: "67,108,864".
fn grouped(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn every_limit_is_on_the_limits_page_with_its_value() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(root.join("src/limits.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("../../docs/limits.md")).unwrap();
    let names: Vec<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert!(names.len() >= 16, "{:?}", names);
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
    for name in &names {
        let v = value(name).unwrap_or_else(|| panic!("limits.rs has {} but this test does not know its value: add it here and to docs/limits.md", name));
        let row = rows.iter().find(|r| r.starts_with(&format!("| `{}` |", name)));
        let row = row.unwrap_or_else(|| panic!("docs/limits.md has no row for {}", name));
        let cell = row.split('|').nth(2).unwrap();
        let shown = cell.contains(&grouped(v)) || cell.trim() == v.to_string();
        assert!(shown, "docs/limits.md shows {} as '{}', but it is {} ({})", name, cell.trim(), v, grouped(v));
    }
    assert_eq!(rows.len(), names.len(), "docs/limits.md has rows for limits that limits.rs does not have");
}
