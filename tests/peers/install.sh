#!/usr/bin/env bash
# Installs what Gatehouse's build and tests need on Debian 12. Idempotent: packages already
# present are skipped, so a second run takes about a second.
set -euo pipefail

# Build: pingora's zlib-ng wants cmake; samael's bindgen wants libclang; xmlsec for SAML.
BUILD_PKGS=(build-essential pkg-config cmake libclang-dev libssl-dev libxml2-dev libxmlsec1-dev)
# Run time and test peers.
TEST_PKGS=(ca-certificates curl)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
