#!/usr/bin/env bash
# Install whatever the build and the tests need and is not there yet. Idempotent, and
# silent when everything is present. Used by `npm start`, `npm test` and `npm run bench`.
#
#   rustup target wasm32-unknown-unknown   the wasm module and the no_std check
#   wasm-bindgen CLI = Cargo.lock's wasm-bindgen version (cargo install, about 5 minutes once;
#                      cargo keeps it in ~/.cargo/bin between sessions on the same machine)
#   node_modules     npm ci, when missing or older than package-lock.json
#   chromium, chromium-driver (Debian)    browser tests
#   qemu-utils (Debian)                    qemu-img / qemu-io for the comparison tests
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then run this again"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed (Node 20 or newer)"

# --- Rust target for the browser build and the no_std proof ---------------------------
if command -v rustup >/dev/null; then
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        say "adding the rustup target wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown >&2
    fi
else
    # Without rustup we can only hope the toolchain already has the target.
    rustc --print target-libdir --target wasm32-unknown-unknown >/dev/null 2>&1 \
        || die "rustup is missing and rustc has no wasm32-unknown-unknown target"
fi

# --- wasm-bindgen CLI: must equal the wasm-bindgen crate in Cargo.lock exactly ---------
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$want" ] || die "could not find the wasm-bindgen version in Cargo.lock"
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
    say "installing wasm-bindgen-cli $want (found: ${have:-none}); this takes a few minutes once"
    # Not --locked: the CLI's own lockfile pins a crate version the registry here lacks.
    cargo install wasm-bindgen-cli --version "$want" >&2
fi

# --- npm packages ------------------------------------------------------------------------
stamp=node_modules/.diskscope-lock.sha256
lock_sum=$(sha256sum package-lock.json | awk '{ print $1 }')
if [ ! -d node_modules ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
    say "installing npm packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error >&2
    printf '%s\n' "$lock_sum" >"$stamp"
fi

# --- Debian packages: Chromium for the browser tests, qemu-utils for the comparisons -----
apt_want=()
[ -x /usr/bin/chromium ] || apt_want+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_want+=(chromium-driver)
{ command -v qemu-img >/dev/null && command -v qemu-io >/dev/null; } || apt_want+=(qemu-utils)
if [ ${#apt_want[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing Debian packages: ${apt_want[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${apt_want[@]}" >&2
    else
        die "missing: ${apt_want[*]}. Install them (Debian: sudo apt-get install ${apt_want[*]}) and run this again"
    fi
fi
