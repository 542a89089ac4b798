#!/usr/bin/env bash
# Installs what Gatehouse's build and tests need on Debian 12. Idempotent: packages already
# present are skipped, so a second run takes about a second.
set -euo pipefail

# Build: pingora's zlib-ng wants cmake; samael's bindgen wants libclang; xmlsec for SAML.
BUILD_PKGS=(build-essential pkg-config cmake libclang-dev libssl-dev libxml2-dev libxmlsec1-dev)
# Run time and test peers.
# procps: pgrep for the load harness; python3-venv for the data-app suite; valgrind for
# benches/load/instructions.sh (instructions per request).
TEST_PKGS=(ca-certificates curl procps python3-venv valgrind)

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

# Installs packages without letting them configure or start a system service: debconf is
# told slapd/no_configuration, and a temporary policy-rc.d forbids service starts. Tests run
# private instances on loopback ports instead.
install_without_services() {
  local missing=()
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "installing: ${missing[*]} (no system service is configured or started)"
  echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  policy=/usr/sbin/policy-rc.d
  policy_backup=""
  if [ -e "$policy" ]; then
    # Someone else's (e.g. Docker's): put back exactly as it was afterwards.
    policy_backup=$($SUDO mktemp /usr/sbin/policy-rc.d.gatehouse.XXXXXX)
    $SUDO cp -p "$policy" "$policy_backup"
  fi
  restore_policy() {
    if [ -n "$policy_backup" ]; then
      $SUDO mv -f "$policy_backup" "$policy"
    else
      $SUDO rm -f "$policy"
    fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# temporary, from gatehouse tests/peers/install.sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  restore_policy
  trap - EXIT
}

# OpenLDAP for the LDAP suite (tests/peers/ldap/start.sh runs private instances).
install_without_services slapd ldap-utils openssl
# HAProxy as the plain round-robin load balancer in front of several replicas, and wrk for
# bounded load while the live state changes (tests/e2e/replicas.rs).
install_without_services haproxy wrk
# nginx (auth_request) and Caddy (forward_auth) in front of Gatehouse's forward-auth
# endpoint (tests/e2e/forward_auth.rs runs them as children with their own configs).
install_without_services nginx caddy

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
