#!/usr/bin/env bash
# Makes the OpenID Provider peer (tests/peers/oidc/server.mjs: panva's certified npm
# `oidc-provider`, pinned in tests/peers/oidc/package-lock.json) runnable on Debian 12: Node.js
# with npm (Debian's nodejs 18 is enough for oidc-provider 8.x; the machine image has Node 20)
# and `npm ci` in tests/peers/oidc. tests/src/oidc.rs starts the server per test.
#
# Idempotent: when everything is in place it only checks, in well under a second.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
oidc_dir="$here/oidc"

say() { echo "oidc.sh: $*"; }
die() { echo "oidc.sh: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Node.js >= 18 and npm.
if ! command -v node >/dev/null 2>&1; then
  say "installing Debian's nodejs and npm"
  apt_install nodejs npm
fi
command -v npm >/dev/null 2>&1 || apt_install npm
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "Node.js $(node --version) is too old: oidc-provider 8.x needs 18 or newer"

# 2. npm packages, reinstalled only when missing or when package-lock.json changed.
stamp="$oidc_dir/node_modules/.gatehouse-lock.sha256"
want=$(sha256sum "$oidc_dir/package-lock.json" | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ ! -d "$oidc_dir/node_modules/oidc-provider" ] || [ "$want" != "$have" ]; then
  say "npm ci in tests/peers/oidc"
  (cd "$oidc_dir" && npm ci --no-audit --no-fund)
  echo "$want" >"$stamp"
fi

say "ready: node $(node --version), oidc-provider $(node -p "require('$oidc_dir/node_modules/oidc-provider/package.json').version")"
