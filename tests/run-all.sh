#!/usr/bin/env bash
# Runs every check and test of Gatehouse: installs and starts what the tests need, then
# formatting, lints, unit tests, end-to-end suites against real peers, and every example
# config through `gatehouse check-config`, then a bounded mutation-testing run.
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

step "Dash, Streamlit, Shiny and Jupyter Server (PyPI, private virtualenv) for the data-app suite"
tests/peers/dataapps.sh

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

step "criterion benches, each run once (cargo test --bench: they build and their assertions hold)"
cargo test --workspace --bench hot_path --bench portal --bench signin

step "load harness smoke run (benches/load/run.sh, SMOKE=1: it runs every row and prints its table)"
target="${CARGO_TARGET_DIR:-$root/target}/debug"
report=$(SMOKE=1 GATEHOUSE_BIN="$target/gatehouse" PINGORA_MIN_BIN="$target/pingora-min" bash benches/load/run.sh)
for row in "nginx proxy" "haproxy" "nginx auth_request" "pingora, minimal" "Gatehouse, public app**" \
    "Gatehouse, signed-in" "user in 2,000 groups"; do
    grep -qF -- "$row" <<<"$report" || { echo "load harness report lacks the row \"$row\":"; echo "$report"; exit 1; }
done
echo "load harness: every row measured"

step "instructions per request, smoke run (benches/load/instructions.sh with a few requests: it runs and prints its table)"
report=$(REQUESTS=20 WARMUP=5 TOP=0 GATEHOUSE_BIN="$target/gatehouse" PINGORA_MIN_BIN="$target/pingora-min" \
    bash benches/load/instructions.sh 2>&1) || { echo "$report"; exit 1; }
for row in "pingora-min" "Gatehouse, public app" "Gatehouse, signed-in" "user in 2,000 groups"; do
    grep -qF -- "$row |" <<<"$report" || { echo "instructions.sh report lacks the row \"$row\":"; echo "$report"; exit 1; }
done
echo "instructions.sh: every row counted"

step "scale figures, smoke run (benches/load/scale.sh, SMOKE=1: 50 apps, 2,000 sessions, seconds-long)"
report=$(SMOKE=1 GATEHOUSE_BIN="$target/gatehouse" bash benches/load/scale.sh 2>&1) || { echo "$report"; exit 1; }
for row in "start-up with" "memory per cached session" "local sign-ins per second" "while" "demo, idle after start" "demo, right after"; do
    grep -qF -- "$row" <<<"$report" || { echo "scale.sh report lacks the row \"$row\":"; echo "$report"; exit 1; }
done
echo "$report"

step "gatehouse check-config config/examples/*.toml"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/gatehouse"
# The examples reference secrets as env:NAME; give them dummy values.
# shellcheck disable=SC1091
( source config/examples/check-env.sh && "$bin" check-config config/examples/*.toml )

step "mutation testing, bounded subset (tests/mutants.sh quick; see tests/MUTANTS.md)"
tests/mutants.sh quick

step "fuzz targets, ${GATEHOUSE_FUZZ_SECONDS:-15} s each (tests/fuzz/run.sh)"
FUZZ_DEV=1 tests/fuzz/run.sh "${GATEHOUSE_FUZZ_SECONDS:-15}"

step "all checks passed"
