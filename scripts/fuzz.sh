#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through libfuzzer-sys) over every target in fuzz/:
# one per format (fmt_*: that driver forced on any bytes, with companion files), `inspect`
# (probe or any driver), `chain` (several files: backing chains, loops, identities) and
# `codec` (decompression). Seeds: images qemu-img makes, images the core's tests build
# (their fuzz_seeds tests), and every saved regression input. A crash, hang or blow-up
# fails the run and leaves the input in fuzz/artifacts/TARGET/. Built with the coverage
# flags cargo-fuzz passes, so CI needs no cargo-fuzz install.
#
#   scripts/fuzz.sh                 the CI pass: fixed seed and fixed runs per target from
#                                   a fresh corpus, so it passes or fails the same way every
#                                   time (a time cap per target only stops a slow machine)
#   scripts/fuzz.sh long 600 [T..]  explore: 600 s a target, random seed, corpus kept in
#                                   target/fuzz-work/corpus-T between runs; prints cov/ft
#   scripts/fuzz.sh coverage 0 [T..] source coverage each target's kept corpus reaches
#                                   (llvm-cov: `rustup component add llvm-tools`), in the
#                                   whole core and in the target's own format module
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
mode="${1:-ci}"
seconds="${2:-600}"
work="${FUZZ_WORK:-$PWD/target/fuzz-work}"
formats=(vpc qed qcow2 qcow cow rawcow addcow gow fvd vdi vhdx parallels vmdk)
targets=(inspect chain codec "${formats[@]/#/fmt_}")
[ $# -gt 2 ] && targets=("${@:3}")

# Seeds the core's tests build (before CARGO_TARGET_DIR points at the fuzz build, so the
# test build `npm test` just made is reused).
seeds="$work/seeds"
if [ ! -d "$seeds" ]; then
    rm -rf "$seeds.tmp" && mkdir -p "$seeds.tmp"
    DISKSCOPE_FUZZ_SEEDS="$seeds.tmp" cargo test -q -p diskscope-core --lib fuzz_seeds >/dev/null
    q="$seeds.tmp/qemu" && mkdir -p "$q"
    for f in qed qcow2 qcow vmdk vpc vdi parallels; do
        qemu-img create -q -f "$f" "$q/s.$f" 1M 2>/dev/null || continue
        qemu-io -f "$f" -c 'write -P 7 4k 8k' -c 'write -P 9 512k 4k' "$q/s.$f" >/dev/null 2>&1 || true
        mkdir -p "$seeds.tmp/fmt_$f" && cp "$q/s.$f" "$seeds.tmp/fmt_$f/"
    done
    # Compressed clusters, a stream-optimized VMDK, and an overlay over a backing file
    # named "b" (the second file of a chain input, see exercise.rs).
    qemu-img convert -q -c -O qcow2 "$q/s.qcow2" "$seeds.tmp/fmt_qcow2/compressed" 2>/dev/null || true
    qemu-img convert -q -O vmdk -o subformat=streamOptimized "$q/s.qcow2" "$seeds.tmp/fmt_vmdk/stream" 2>/dev/null || true
    head -c 65536 /dev/zero | tr '\0' '\5' >"$q/b"
    for f in qcow2 qed; do
        (cd "$q" && qemu-img create -q -f "$f" -b b -F raw "over.$f" 64K 2>/dev/null \
            && qemu-io -f "$f" -c 'write -P 3 0 4k' "over.$f" >/dev/null 2>&1 \
            && printf '\n--\n' | cat "over.$f" - b >"../fmt_$f/over-b") || true
    done
    # Variants mutation would seldom reach (a feature bit and the structures it brings), as
    # qemu-img makes them; line coverage (`fuzz.sh coverage`) showed their code never ran.
    # qcow2: version 2, subclusters, zstd, a persistent bitmap, the dirty bit lazy refcounts
    # leave when the writer dies, an external data file (named "b", the second file) and
    # LUKS (its 2 MiB of key material cut to the first MiB).
    v="$q/variants" && mkdir -p "$v" && d="$seeds.tmp/fmt_qcow2"
    w() { qemu-io -f "$1" "${@:3}" "$2" >/dev/null 2>&1 || true; }
    qemu-img create -q -f qcow2 -o compat=0.10 "$v/v2" 1M && w qcow2 "$v/v2" -c 'write -P 7 4k 8k' -c 'write -z 512k 64k' && cp "$v/v2" "$d/compat-0.10" || true
    qemu-img create -q -f qcow2 -o extended_l2=on "$v/ext" 1M \
        && w qcow2 "$v/ext" -c 'write -P 7 4k 6k' -c 'write -z 128k 8k' -c 'write -P 9 200k 2k' -c 'write -P 5 256k 64k' -c 'discard 260k 4k' \
        && cp "$v/ext" "$d/extended-l2" || true
    qemu-img convert -q -c -O qcow2 -o compression_type=zstd "$q/s.qcow2" "$d/zstd" 2>/dev/null || true
    cp "$q/s.qcow2" "$v/bm" && qemu-img bitmap --add "$v/bm" bitmap0 2>/dev/null && w qcow2 "$v/bm" -c 'write -P 3 64k 4k' && cp "$v/bm" "$d/bitmap" || true
    # qemu-io's abort kills it with the image open: no core file, please.
    qemu-img create -q -f qcow2 -o lazy_refcounts=on "$v/lazy" 1M && (ulimit -c 0; w qcow2 "$v/lazy" -c 'write -P 4 0 4k' -c abort) 2>/dev/null && cp "$v/lazy" "$d/dirty" || true
    (cd "$v" && qemu-img create -q -f qcow2 -o data_file=b,data_file_raw=on df 64K 2>/dev/null \
        && w qcow2 df -c 'write -P 6 8k 4k' && printf '\n--\n' | cat df - b >"$d/data-file-b") || true
    qemu-img create -q -f qcow2 --object secret,id=k,data=fuzz -o encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=10 "$v/luks" 1M 2>/dev/null \
        && head -c 1048576 "$v/luks" >"$d/luks" || true
    # VDI static, VHD fixed, and VMDK's flat and split kinds with their extents renamed to
    # the input's second and third files.
    qemu-img create -q -f vdi -o static=on "$v/st" 1M && w vdi "$v/st" -c 'write -P 7 4k 8k' && cp "$v/st" "$seeds.tmp/fmt_vdi/static" || true
    qemu-img create -q -f vpc -o subformat=fixed "$v/fx" 1M && w vpc "$v/fx" -c 'write -P 7 4k 8k' && cp "$v/fx" "$seeds.tmp/fmt_vpc/fixed" || true
    for k in monolithicFlat twoGbMaxExtentSparse; do
        (cd "$v" && rm -f m* && qemu-img create -q -f vmdk -o subformat=$k m.vmdk 3G 2>/dev/null \
            && w vmdk m.vmdk -c 'write -P 7 4k 8k' -c 'write -P 9 2100M 4k' \
            && x=$(ls m-* | sort) && set -- $x && sed -e "s/\"$1\"/\"b\"/" -e "s/\"${2:-none}\"/\"c\"/" m.vmdk >desc \
            && { cat desc; for e in $x; do printf '\n--\n'; head -c 1048576 "$e"; done; } >"$seeds.tmp/fmt_vmdk/$k") || true
    done
    mkdir -p "$seeds.tmp/inspect" "$seeds.tmp/chain"
    for s in "$seeds.tmp"/fmt_*/*; do
        # inspect's first byte picks the probe (0) or a driver, and the rest is one file: a
        # seed's first file only. Given a whole multi-file seed, an add-cow file read the
        # files after it as its bitmap (a 600 GiB disk of random runs, 2-3 s a run) and such
        # inputs took 80 % of inspect's time. chain probes the first file of the whole seed.
        cut=$(grep -obUaPz -m1 '\n--\n' "$s" | tr '\0' '\n' | head -1 | cut -d: -f1 || true)
        { printf '\0'; head -c "${cut:-$(stat -c %s "$s")}" "$s"; } \
            >"$seeds.tmp/inspect/$(basename "$(dirname "$s")")-$(basename "$s")"
        cp "$s" "$seeds.tmp/chain/$(basename "$(dirname "$s")")-$(basename "$s")"
    done
    rm -rf "$q"
    mv "$seeds.tmp" "$seeds"
fi

if [ "$mode" = coverage ]; then
    # The corpus each target kept, replayed once by a build instrumented for source coverage.
    export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}-cov"
    export RUSTFLAGS="-Cinstrument-coverage --cfg fuzzing"
    host=$(rustc -vV | sed -n 's/^host: //p')
    tools="$(rustc --print sysroot)/lib/rustlib/$host/bin"
    (cd fuzz && cargo build -q --release --bins --target "$host")
    bin="$CARGO_TARGET_DIR/$host/release"
    printf '%-14s %10s %22s %22s\n' target inputs "core lines covered" "format lines covered"
    for t in "${targets[@]}"; do
        corpus="$work/corpus-$t"
        [ -d "$corpus" ] || continue
        rm -rf "$work/cov-$t" && mkdir -p "$work/cov-$t"
        LLVM_PROFILE_FILE="$work/cov-$t/%p-%m.profraw" "$bin/$t" -runs=0 -max_len=8388608 "$corpus" >/dev/null 2>&1 || true
        "$tools/llvm-profdata" merge -sparse "$work/cov-$t"/*.profraw -o "$work/cov-$t.profdata"
        report() { "$tools/llvm-cov" report "$bin/$t" -instr-profile="$work/cov-$t.profdata" "$@" 2>/dev/null | tail -1; }
        # Columns of the TOTAL line: regions, missed, cover, functions, missed, executed, lines, missed, cover...
        core=$(report "$PWD/crate/core/src" | awk '{ printf "%d/%d %s", $8-$9, $8, $10 }')
        dir=$(printf '%s' "${t#fmt_}" | sed 's/^rawcow$/cow/; s/^addcow$/addcow/')
        fmt="-"
        [ "${t#fmt_}" != "$t" ] && fmt=$(report "$PWD/crate/core/src/formats/$dir" | awk '{ printf "%d/%d %s", $8-$9, $8, $10 }')
        printf '%-14s %10s %22s %22s\n' "$t" "$(ls "$corpus" | wc -l)" "$core" "$fmt"
    done
    exit 0
fi

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts, as cargo-fuzz does.
host=$(rustc -vV | sed -n 's/^host: //p')
(cd fuzz && cargo build -q --release --bins --target "$host")
bin="$CARGO_TARGET_DIR/$host/release"

failed=()
for t in "${targets[@]}"; do
    corpus="$work/corpus-$t"
    if [ "$mode" = ci ]; then
        rm -rf "$corpus"
        # Runs sized so each target takes 2-12 s on an idle 2-core machine (the whole pass
        # stays far under 5 minutes); the time cap only ends a slow machine's run early.
        # chain, add-cow and FVD inputs name companion files, and a pair whose walk spans
        # exabytes runs to its budget: tens of runs a second, so fewer runs.
        case "$t" in
            codec) runs=100000 ;; inspect) runs=4000 ;; chain) runs=1500 ;;
            fmt_vhdx) runs=1000 ;; fmt_fvd) runs=800 ;; fmt_addcow) runs=150 ;; *) runs=3000 ;;
        esac
        limits=(-seed=1 -runs="$runs" -max_total_time=14)
    else
        limits=(-max_total_time="$seconds")
    fi
    mkdir -p "$corpus" fuzz/artifacts/"$t"
    extra=()
    for d in "fuzz/regressions/$t" "$seeds/$t"; do
        [ -d "$d" ] && extra+=("$d")
    done
    printf 'fuzz: %-14s %s\n' "$t" "${limits[*]}"
    start=$SECONDS
    # VPC's and Parallels' qemu-img seeds are 2 MiB, and VHDX's dirty-log seed (random log
    # data) is as long. Larger files (VHDX's structures at MiB offsets, GOW's 4-32 MiB
    # tables) come in SparseFile's compact form (exercise.rs).
    case "$t" in fmt_vpc | fmt_parallels | fmt_vhdx | chain | inspect) max_len=2200000 ;; *) max_len=1100000 ;; esac
    "$bin/$t" "${limits[@]}" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" "$corpus" "${extra[@]}" >"$work/log-$t" 2>&1 || true
    # The last status line carries libFuzzer's coverage figures (cov: edges, ft: features).
    # (None when the target stopped while loading its corpus: a timeout there, say.)
    last=$(grep -E '^#[0-9]+' "$work/log-$t" | tail -1 | sed -E 's/ +/ /g' || true)
    # Where the kept corpus started (a long run's plateau shows as little between the two).
    first=$(sed -nE 's/^#[0-9]+[[:space:]]+INITED cov: ([0-9]+) ft: ([0-9]+).*/\1 \2/p' "$work/log-$t" | head -1)
    [ "$mode" = ci ] || printf 'fuzz: %-14s corpus started at cov/ft %s\n' "$t" "${first:-?}"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log-$t")
    printf 'fuzz: %-14s %3ss %8s runs | %s\n' "$t" $((SECONDS - start)) "${execs:-?}" "$last"
    grep -E 'ERROR|SUMMARY|panicked|Test unit written' "$work/log-$t" || true
    # A CI corpus is thrown away (the next pass starts fresh): do not keep its megabytes.
    [ "$mode" = ci ] && rm -rf "$corpus"
    if [ -n "$(ls -A fuzz/artifacts/"$t" 2>/dev/null)" ]; then
        echo "fuzz: $t found a failing input: fuzz/artifacts/$t/ (add it to fuzz/regressions/$t/ once fixed)" >&2
        failed+=("$t")
        # CI stops at the first; a long run goes on with the other targets.
        [ "$mode" = ci ] && exit 1
    fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: failing inputs from: ${failed[*]}" >&2; exit 1; }
echo "fuzz: every target ran without a crash"
