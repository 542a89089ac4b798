#!/usr/bin/env bash
# Installs what tests/fuzz/run.sh needs: a nightly Rust toolchain (libFuzzer's coverage
# instrumentation is nightly-only) and cargo-fuzz. Idempotent: quick when both are there.
set -euo pipefail
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  # Its own target folder: never the project's.
  CARGO_TARGET_DIR="$(mktemp -d)" cargo install cargo-fuzz --locked
fi
