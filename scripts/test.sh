#!/usr/bin/env bash
# Every test, in order, stopping at the first failure: `npm test`.
#   setup -> release CLI -> native Rust tests (core units, CLI against qemu-img; every test
#   binary runs, then the stage fails if any failed)
#   -> no_std proof -> short fuzzing pass -> web build -> browser tests (node:test)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
suite_start=$SECONDS
times=()

# step "heading" command...: run one stage under a heading and time it.
step() {
    local name="$1" start=$SECONDS
    shift
    printf '\n==== %s\n' "$name"
    if ! "$@"; then
        printf '\n==== FAILED: %s (after %ds)\n' "$name" $((SECONDS - start)) >&2
        exit 1
    fi
    times+=("$(printf '%5ds  %s' $((SECONDS - start)) "$name")")
}

native_tests() {
    DISKSCOPE_BIN="$target_dir/release/diskscope" \
        cargo test --no-fail-fast --workspace --exclude diskscope-wasm --exclude nostd-check
}

browser_tests() {
    if [ -d tests/browser ] && [ -n "$(find tests/browser -type f \( -name '*.test.*' -o -name 'test-*' -o -name '*_test.*' -o -name '*-test.*' \) -print -quit)" ]; then
        DISKSCOPE_BIN="$target_dir/release/diskscope" node --test tests/browser/
    else
        echo "no browser tests in tests/browser/ yet"
    fi
}

step "setup: install what is missing" bash scripts/setup.sh
step "release CLI: cargo build --release -p diskscope" cargo build --release -p diskscope
step "native tests: cargo test (core units; CLI against qemu-img)" native_tests
step "no_std check: nostd-check for wasm32-unknown-unknown" \
    cargo build -p nostd-check --target wasm32-unknown-unknown --release
step "fuzz: a short pass over every target (scripts/fuzz.sh)" bash scripts/fuzz.sh
step "web build: npm run build" npm run --silent build
step "browser tests: node --test tests/browser/" browser_tests

printf '\n==== all stages passed in %ds\n' $((SECONDS - suite_start))
printf '%s\n' "${times[@]}"
