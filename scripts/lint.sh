#!/usr/bin/env bash
# make lint: rustfmt, and clippy with -D warnings on the user-space crate and on the eBPF crate for
# the BPF target. The eBPF pass needs -Z build-std: the nightly when the machine has one, else
# stable with RUSTC_BOOTSTRAP=1 (the same compiler flags; see README, Requirements).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
$CARGO fmt --all --check
# The fuzz targets are their own workspace (built by scripts/fuzz.sh with the nightly).
rustfmt --edition 2024 --check otel-netprobe/fuzz/fuzz_targets/*.rs
$CARGO clippy --locked --workspace --all-targets -- -D warnings
if rustup toolchain list | grep -q '^nightly'; then
  (cd netprobe-ebpf && $CARGO +nightly clippy --locked --release --bins \
    --target bpfel-unknown-none -Z build-std=core -- -D warnings)
else
  (cd netprobe-ebpf && RUSTC_BOOTSTRAP=1 $CARGO +stable clippy --locked --release --bins \
    --target bpfel-unknown-none -Z build-std=core -- -D warnings)
fi
