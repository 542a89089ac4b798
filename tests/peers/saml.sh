#!/usr/bin/env bash
# Installs what the SAML suite's identity provider needs on Debian 12: SimpleSAMLphp 1.19 from
# Debian's own `simplesamlphp` package, served later by PHP's built-in web server on a free
# loopback port (tests/peers/saml/start.sh).
#
# `apt-get install simplesamlphp` would pull in a web server (Depends: apache2 | httpd) and start
# a system Apache on :80, so the package is only downloaded (`apt-get download`) and unpacked
# with `dpkg-deb -x` into a cache folder:
#
#   ${GATEHOUSE_SSP_CACHE:-$HOME/.cache/gatehouse/simplesamlphp}/
#     simplesamlphp_<version>_all.deb   the downloaded package
#     root/                             its unpacked files (root/usr/share/simplesamlphp/www, …)
#     root/.unpacked                    the .deb's file name, written once unpacking succeeded
#
# The package bundles its PHP libraries (vendor/: symfony, twig, xmlseclibs, saml2), so its only
# run-time needs are PHP itself and the extensions it loads: php8.2-cli (with php8.2-common:
# openssl, session, ctype, …), php8.2-xml (dom, simplexml, xmlreader, xmlwriter) and
# php8.2-mbstring. xmlsec1 (the command-line tool) signs crafted responses
# (tests/peers/saml/craft.py) and verifies signatures in tests; python3 runs craft.py. None of
# these pulls a web server.
#
# Idempotent: when everything is in place it only checks, in well under a second.
set -euo pipefail

CACHE="${GATEHOUSE_SSP_CACHE:-$HOME/.cache/gatehouse/simplesamlphp}"
PKGS=(php8.2-cli php8.2-xml php8.2-mbstring xmlsec1 openssl python3 curl)

say() { echo "saml.sh: $*"; }
die() { echo "saml.sh: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# 1. PHP, its extensions, xmlsec1.
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
updated=""
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing: ${missing[*]}"
  as_root apt-get update -qq
  updated=1
  # Refuse anything that would bring a web server (and start it on :80).
  plan=$(as_root apt-get install -s --no-install-recommends "${missing[@]}" | awk '/^Inst /{print $2}')
  if grep -qE '^(apache2|apache2-bin|nginx|nginx-[a-z-]+|lighttpd|libapache2-mod-php.*)$' <<<"$plan"; then
    die "installing ${missing[*]} would install a web server ($(tr '\n' ' ' <<<"$plan")); not doing that"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
php -r 'foreach (["dom", "simplexml", "xmlreader", "xmlwriter", "mbstring", "openssl", "session", "json", "zlib", "ctype"] as $e) { if (!extension_loaded($e)) { fwrite(STDERR, "missing PHP extension $e\n"); exit(1); } }' ||
  die "PHP lacks an extension SimpleSAMLphp needs"

# 2. The simplesamlphp package, downloaded and unpacked (never installed).
mkdir -p "$CACHE"
deb_ok() { [ -f "$CACHE/root/.unpacked" ] && [ -f "$CACHE/$(<"$CACHE/root/.unpacked")" ] &&
  [ -f "$CACHE/root/usr/share/simplesamlphp/www/_include.php" ]; }
if deb_ok; then
  say "SimpleSAMLphp already unpacked in $CACHE/root ($(<"$CACHE/root/.unpacked"))"
else
  deb=$(find "$CACHE" -maxdepth 1 -name 'simplesamlphp_*_all.deb' -printf '%f\n' | sort -V | tail -n1)
  if [ -z "$deb" ]; then
    [ -n "$updated" ] || as_root apt-get update -qq
    say "downloading the simplesamlphp package (not installing it) into $CACHE"
    # apt's sandbox user cannot write into a folder under /root: download as the caller.
    out=$(cd "$CACHE" && apt-get download -q simplesamlphp 2>&1) || die "apt-get download simplesamlphp failed: $out"
    grep -v 'Download is performed unsandboxed' <<<"$out" || true
    deb=$(find "$CACHE" -maxdepth 1 -name 'simplesamlphp_*_all.deb' -printf '%f\n' | sort -V | tail -n1)
    [ -n "$deb" ] || die "apt-get download simplesamlphp left no .deb in $CACHE"
  fi
  say "unpacking $deb"
  rm -rf "$CACHE/root.tmp"
  dpkg-deb -x "$CACHE/$deb" "$CACHE/root.tmp"
  [ -f "$CACHE/root.tmp/usr/share/simplesamlphp/www/_include.php" ] ||
    die "$deb has no usr/share/simplesamlphp/www/_include.php"
  echo "$deb" >"$CACHE/root.tmp/.unpacked"
  rm -rf "$CACHE/root"
  mv "$CACHE/root.tmp" "$CACHE/root"
fi

# 3. The layout the scripts were written against (1.19: www/saml2/idp/*.php endpoints).
[ -f "$CACHE/root/usr/share/simplesamlphp/www/saml2/idp/SSOService.php" ] ||
  die "unexpected SimpleSAMLphp layout in $CACHE/root (no www/saml2/idp/SSOService.php): 1.19 expected"
say "ready: $(php -r 'echo PHP_VERSION;') with SimpleSAMLphp from $(<"$CACHE/root/.unpacked"); $(xmlsec1 --version | head -n1)"
