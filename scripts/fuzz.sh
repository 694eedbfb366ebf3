#!/usr/bin/env bash
# A short coverage-guided fuzzing pass over every target in fuzz/ (libFuzzer through
# libfuzzer-sys), from a seed corpus of images made by qemu-img plus every saved
# regression input. A crash, hang or blow-up fails the run and leaves the input in
# fuzz/artifacts/. Built with the coverage flags cargo-fuzz would pass, so CI needs no
# cargo-fuzz install (for long local runs, `cargo fuzz run -s none T` works too).
#
#   scripts/fuzz.sh            the CI pass: a fixed seed and a fixed number of runs per
#                              target from a fresh corpus, so it passes or fails the same
#                              way every time (SECONDS only caps a slow machine)
#   scripts/fuzz.sh 600 long   explore: 600 s a target, random seed, corpus kept in
#                              target/fuzz-work between runs
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${1:-90}"
mode="${2:-ci}"
work="${FUZZ_WORK:-$PWD/target/fuzz-work}"
targets=(inspect chain codec)

export CARGO_TARGET_DIR="$PWD/target/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts, as cargo-fuzz does.
host=$(rustc -vV | sed -n 's/^host: //p')
(cd fuzz && cargo build --release --bins --target "$host")
bin="$CARGO_TARGET_DIR/$host/release"

# Seeds: small images of every format qemu-img makes, and the saved regressions.
seeds="$work/seeds"
if [ ! -d "$seeds" ]; then
    mkdir -p "$seeds.tmp"
    for f in qed qcow2 qcow vmdk vpc vhdx vdi parallels; do
        qemu-img create -q -f "$f" "$seeds.tmp/s.$f" 1M 2>/dev/null || continue
        qemu-io -f "$f" -c 'write -P 7 4k 8k' -c 'write -P 9 512k 4k' "$seeds.tmp/s.$f" >/dev/null 2>&1 || true
    done
    mv "$seeds.tmp" "$seeds"
fi

for t in "${targets[@]}"; do
    corpus="$work/corpus-$t"
    limits=(-max_total_time="$seconds")
    if [ "$mode" = ci ]; then
        rm -rf "$corpus"
        case "$t" in codec) runs=200000 ;; chain) runs=6000 ;; *) runs=20000 ;; esac
        limits+=(-seed=1 -runs="$runs")
    fi
    mkdir -p "$corpus" fuzz/artifacts/"$t"
    extra=()
    [ -d "fuzz/regressions/$t" ] && extra+=("fuzz/regressions/$t")
    [ "$t" = codec ] || extra+=("$seeds")
    printf 'fuzz: %s (%s)\n' "$t" "${limits[*]}"
    "$bin/$t" "${limits[@]}" -max_len=1100000 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" "$corpus" "${extra[@]}" 2>&1 \
        | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|SUMMARY|panicked|Test unit written' || true
    if [ -n "$(ls -A fuzz/artifacts/"$t" 2>/dev/null)" ]; then
        echo "fuzz: $t found a failing input: fuzz/artifacts/$t/ (add it to fuzz/regressions/$t/ once fixed)" >&2
        exit 1
    fi
done
echo "fuzz: every target ran without a crash"
