#!/usr/bin/env bash
# Builds the cargo-fuzz targets and runs each for SECONDS (default 15) from the committed
# seeds in corpus/<target>/. New inputs go to a scratch folder, never into the repository;
# a crash is saved in artifacts/<target>/ and makes this script fail.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
# Needs nightly Rust and cargo-fuzz (tests/peers/install.sh installs both). The build goes
# to $FUZZ_TARGET_DIR (default: $CARGO_TARGET_DIR/fuzz, else target/fuzz). The sanitizer is
# FUZZ_SANITIZER (default none: the code under test forbids unsafe; use address for C libs);
# FUZZ_DEV=1 builds unoptimised (faster to build, slower to fuzz).
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
root=$(cd ../.. && pwd)
seconds=${1:-15}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(route host cookie saml_response saml_logout config)
fi
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/fuzz}"
sanitizer=${FUZZ_SANITIZER:-none}
# FUZZ_DEV=1: an unoptimised, incremental build (the test command's short run, where the
# build dominates); otherwise cargo-fuzz's optimised one (long runs).
profile=()
if [ "${FUZZ_DEV:-0}" = 1 ]; then
    profile=(--dev)
fi
cd "$root"
start=$(date +%s)
cargo +nightly fuzz build "${profile[@]}" --fuzz-dir tests/fuzz -s "$sanitizer"
echo "fuzz targets built in $(( $(date +%s) - start )) s"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "$fuzz_dir/artifacts/$t"
    echo "==> fuzzing $t for ${seconds}s"
    if ! cargo +nightly fuzz run "${profile[@]}" --fuzz-dir tests/fuzz -s "$sanitizer" "$t" "$scratch/$t" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$fuzz_dir/artifacts/$t/" -print_final_stats=1 2>"$scratch/$t.log"; then
        tail -n 40 "$scratch/$t.log" >&2
        failed+=("$t")
    else
        grep -E '^stat::number_of_executed_units|^Done' "$scratch/$t.log" | tr '\n' ' '
        echo
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz targets failed: ${failed[*]} (inputs in tests/fuzz/artifacts/)" >&2
    exit 1
fi
echo "all fuzz targets ran clean"
