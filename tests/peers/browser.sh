#!/usr/bin/env bash
# Makes the headless-browser suite (tests/browser, run by tests/e2e/browser.rs) runnable on
# Debian 12: Debian's Chromium at /usr/bin/chromium, Node.js with npm, and the npm packages
# pinned in tests/browser/package-lock.json (playwright-core only; it never downloads a
# browser).
#
# Idempotent: when everything is in place it only checks, in well under a second.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
browser_dir=$(cd "$here/../browser" && pwd)

say() { echo "browser.sh: $*"; }
die() { echo "browser.sh: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Chromium from Debian (Playwright cannot download its own browser here).
if [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium (a few minutes on a fresh machine)"
  apt_install chromium
  [ -x /usr/bin/chromium ] || die "the chromium package did not provide /usr/bin/chromium"
fi

# 2. Node.js >= 18 and npm (the machine image has Node 20; Debian 12's own nodejs is 18).
if ! command -v node >/dev/null 2>&1; then
  say "installing Debian's nodejs and npm"
  apt_install nodejs npm
fi
command -v npm >/dev/null 2>&1 || apt_install npm
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "Node.js $(node --version) is too old: need 18 or newer"
if [ "$node_major" -lt 20 ]; then
  say "warning: Node.js $(node --version); the pinned playwright-core declares node >= 20"
fi

# 3. npm packages, reinstalled only when missing or when package-lock.json changed.
stamp="$browser_dir/node_modules/.gatehouse-lock.sha256"
want=$(sha256sum "$browser_dir/package-lock.json" | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ ! -d "$browser_dir/node_modules/playwright-core" ] || [ "$want" != "$have" ]; then
  say "npm ci in tests/browser"
  (cd "$browser_dir" && npm ci --no-audit --no-fund)
  echo "$want" >"$stamp"
fi

say "ready: $(/usr/bin/chromium --version 2>/dev/null | head -n1), node $(node --version), playwright-core $(node -p "require('$browser_dir/node_modules/playwright-core/package.json').version")"
