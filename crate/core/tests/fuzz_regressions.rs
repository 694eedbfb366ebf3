//! Every input a fuzz target ever crashed on (fuzz/regressions/TARGET/*), replayed through
//! the same code the target runs: none may panic again.
#[path = "../../../fuzz/fuzz_targets/exercise.rs"]
mod exercise;

use std::path::Path;

fn replay(target: &str, run: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for e in entries.flatten() {
        let data = std::fs::read(e.path()).unwrap();
        // A panic here names the input through the test's output.
        eprintln!("replaying {}", e.path().display());
        run(&data);
    }
}

#[test]
fn inspect_regressions() {
    replay("inspect", exercise::inspect);
}

#[test]
fn chain_regressions() {
    replay("chain", exercise::chain);
}

#[test]
fn codec_regressions() {
    replay("codec", exercise::codec);
}

#[test]
fn format_regressions() {
    for (target, format) in exercise::FORMAT_TARGETS {
        replay(target, |data| exercise::format(format, data));
    }
}
