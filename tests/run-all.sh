#!/usr/bin/env bash
# Runs every check and test of Gatehouse: installs and starts what the tests need, then
# formatting, lints, unit tests, end-to-end suites against real peers, and every example
# config through `gatehouse check-config`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
tests/peers/install.sh

step "PostgreSQL for the store suite"
tests/peers/postgres.sh

step "SimpleSAMLphp (Debian package, unpacked, not installed) as SAML IdP for the SAML suite"
tests/peers/saml.sh

step "headless Chromium and Playwright for the browser suite"
tests/peers/browser.sh

step "the OpenID Provider (npm oidc-provider) for the OIDC suite"
tests/peers/oidc.sh

step "nightly Rust and cargo-fuzz for the fuzz targets"
tests/peers/fuzz.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build"
cargo build --workspace --bins --tests

step "cargo test"
cargo test --workspace -- --test-threads "${GATEHOUSE_TEST_THREADS:-4}"

step "gatehouse check-config config/examples/*.toml"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/gatehouse"
# The examples reference secrets as env:NAME; give them dummy values.
# shellcheck disable=SC1091
( source config/examples/check-env.sh && "$bin" check-config config/examples/*.toml )

step "fuzz targets, ${GATEHOUSE_FUZZ_SECONDS:-15} s each (tests/fuzz/run.sh)"
tests/fuzz/run.sh "${GATEHOUSE_FUZZ_SECONDS:-15}"

step "all checks passed"
