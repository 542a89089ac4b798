#!/usr/bin/env bash
# Installs cargo-mutants (mutation testing; tests/mutants.sh, tests/MUTANTS.md) with
# `cargo install --locked` when it is missing or not the pinned version. Idempotent: when it
# is in place this only checks, in well under a second.
set -euo pipefail

want=27.1.0
have=$(cargo mutants --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "mutants.sh: installing cargo-mutants $want (found: ${have:-none})"
  # In cargo's own temporary target folder, not the project's.
  env -u CARGO_TARGET_DIR cargo install --locked --version "$want" cargo-mutants
fi
