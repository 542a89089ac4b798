#!/usr/bin/env bash
# Starts a private SimpleSAMLphp 1.19 SAML 2.0 identity provider for Gatehouse's SAML tests,
# served by PHP's built-in web server on loopback only.
#
#   tests/peers/saml/start.sh DIR PORT SP_METADATA_XML_FILE [options]
#
# Options (per-SP switches, written into DIR/metadata/saml20-sp-remote.php at every start):
#   --sign-assertion          sign the Assertion (the default; SimpleSAMLphp's own default)
#   --sign-response           also sign the Response (both are then signed)
#   --sign-response-only      sign the Response but not the Assertion
#   --encrypt-assertion       encrypt the Assertion with the SP's certificate from its metadata
#   --signature-algorithm A   sha256 (default), sha1 or sha512 (RSA), for every signature
#   --no-sign-logout          send LogoutRequest/LogoutResponse unsigned (default: signed, in the
#                             HTTP-Redirect binding's SigAlg/Signature query parameters)
#   --assertion-lifetime S    NotOnOrAfter = now + S seconds (default 300)
#
# Needs tests/peers/saml.sh first (PHP, and the simplesamlphp package unpacked, not installed,
# in ${GATEHOUSE_SSP_CACHE:-$HOME/.cache/gatehouse/simplesamlphp}/root).
#
# First run on DIR: a secret salt and the IdP's RSA-2048 signing key + self-signed certificate
# (DIR/cert/idp.key, idp.crt, idp.pem = both). Every run rewrites DIR/config/config.php,
# authsources.php and DIR/metadata/*.php (so a different SP metadata file or options take effect,
# even while the server runs: SimpleSAMLphp reads them at every request), then starts
# `php -S 127.0.0.1:PORT -t DIR/docroot` (DIR/docroot/simplesaml is a symlink to the package's
# www/, so URLs are http://127.0.0.1:PORT/simplesaml/...) unless this DIR's server already runs,
# and waits (at most 30 s) until the IdP metadata URL answers 200. PID in DIR/php.pid; logs in
# DIR/log/ (simplesamlphp.log, php-server.log, php-errors.log). Stop with stop.sh DIR; start
# again with start.sh on the same DIR (keys and salt are kept).
#
# IdP: entity id http://127.0.0.1:PORT/simplesaml/saml2/idp/metadata.php (also its metadata
# URL), auth source example-userpass (exampleauth:UserPass). Users (user:password):
#   alice:alice-pw  uid alice, email alice@example.org, displayName "Alice Able", groups finance, staff
#   bob:bob-pw      uid bob, groups staff
#   many:many-pw    uid many, groups bulk-0000 … bulk-1999 and staff (2,001 values, ~150 KB response)
#   sid:sid-pw      uid sid, groups S-1-5-21-1-2-3-1101 and CN=Finance,OU=Groups,DC=corp (AD-style)
#   rnd:rnd-pw      uid rnd, groups "R&D, Europe", "staff,admins" and "100% remote" (one group each)
# NameID: format persistent, value = uid. Attributes (NameFormat basic): uid, email, displayName,
# groups. Admin password: admin-pw.
#
# If GATEHOUSE_SAML_OWNER_PID is set, the server is also terminated when that process ends.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "saml/start.sh: $*" >&2; exit 1; }
say() { echo "saml/start.sh: $*"; }

[ $# -ge 3 ] || die "usage: $0 DIR PORT SP_METADATA_XML_FILE [--sign-response|--sign-response-only|--encrypt-assertion|--signature-algorithm A|--no-sign-logout|--assertion-lifetime S]"
DIR=$1
PORT=$2
SP_XML=$3
shift 3
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "not a port: $PORT"
[ -s "$SP_XML" ] || die "SP metadata file missing or empty: $SP_XML"

sign_assertion=true
sign_response=false
encrypt=false
sig_alg=sha256
sign_logout=true
lifetime=300
while [ $# -gt 0 ]; do
  case "$1" in
    --sign-assertion) sign_assertion=true ;;
    --sign-response) sign_response=true ;;
    --sign-response-only) sign_response=true; sign_assertion=false ;;
    --encrypt-assertion) encrypt=true ;;
    --signature-algorithm)
      [ $# -ge 2 ] || die "--signature-algorithm needs sha1, sha256 or sha512"
      sig_alg=$2
      shift
      ;;
    --no-sign-logout) sign_logout=false ;;
    --assertion-lifetime)
      [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || die "--assertion-lifetime needs seconds"
      lifetime=$2
      shift
      ;;
    *) die "unknown option: $1" ;;
  esac
  shift
done
case "$sig_alg" in
  sha1) sig_uri="http://www.w3.org/2000/09/xmldsig#rsa-sha1" ;;
  sha256) sig_uri="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" ;;
  sha512) sig_uri="http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" ;;
  *) die "unknown signature algorithm: $sig_alg (sha1, sha256, sha512)" ;;
esac

CACHE="${GATEHOUSE_SSP_CACHE:-$HOME/.cache/gatehouse/simplesamlphp}"
SSP="$CACHE/root/usr/share/simplesamlphp"
PHP=$(command -v php 2>/dev/null || true)
[ -n "$PHP" ] || die "php not found: run tests/peers/saml.sh (installs php8.2-cli php8.2-xml php8.2-mbstring xmlsec1)"
[ -f "$SSP/www/_include.php" ] ||
  die "SimpleSAMLphp is not unpacked in $CACHE/root: run tests/peers/saml.sh"
OPENSSL=$(command -v openssl 2>/dev/null) || die "openssl not found: run tests/peers/saml.sh"
CURL=$(command -v curl 2>/dev/null) || die "curl not found: run tests/peers/saml.sh"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
case "$DIR" in *[[:space:]\'\"\\]*) die "DIR must not contain white space, quotes or backslashes: $DIR" ;; esac
SP_XML=$(cd "$(dirname "$SP_XML")" && pwd)/$(basename "$SP_XML")
mkdir -p "$DIR/config" "$DIR/metadata" "$DIR/cert" "$DIR/log" "$DIR/sessions" "$DIR/tmp" "$DIR/data" "$DIR/docroot"

BASE="http://127.0.0.1:$PORT/simplesaml/"
ENTITY_ID="${BASE}saml2/idp/metadata.php"

alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
# Is the PID in DIR/php.pid a live php -S serving this DIR?
running_pid() {
  local pid
  [ -f "$DIR/php.pid" ] || return 1
  pid=$(<"$DIR/php.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-t $DIR/docroot " || return 1
  echo "$pid"
}

# 1. Once per DIR: secret salt, IdP signing key and self-signed certificate.
if [ ! -s "$DIR/config/secretsalt" ]; then
  "$OPENSSL" rand -hex 32 >"$DIR/config/secretsalt"
  chmod 600 "$DIR/config/secretsalt"
fi
if [ ! -s "$DIR/cert/idp.key" ] || [ ! -s "$DIR/cert/idp.crt" ]; then
  "$OPENSSL" req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout "$DIR/cert/idp.key" -out "$DIR/cert/idp.crt" \
    -subj "/O=Gatehouse tests/CN=Gatehouse test SAML IdP" 2>/dev/null
  chmod 600 "$DIR/cert/idp.key"
  cat "$DIR/cert/idp.key" "$DIR/cert/idp.crt" >"$DIR/cert/idp.pem"
  chmod 600 "$DIR/cert/idp.pem"
fi
SALT=$(<"$DIR/config/secretsalt")

# 2. config.php
cat >"$DIR/config/config.php" <<EOF
<?php
// Generated by tests/peers/saml/start.sh; rewritten at every start.
\$config = [
    'baseurlpath' => '$BASE',
    'application' => ['baseURL' => 'http://127.0.0.1:$PORT/'],
    'certdir' => '$DIR/cert/',
    'loggingdir' => '$DIR/log/',
    'datadir' => '$DIR/data/',
    'tempdir' => '$DIR/tmp',
    'metadatadir' => '$DIR/metadata/',
    'metadata.sources' => [['type' => 'flatfile', 'directory' => '$DIR/metadata/']],
    'attributenamemapdir' => '$SSP/attributemap/',
    'technicalcontact_name' => 'Gatehouse tests',
    'technicalcontact_email' => 'na@example.org',
    'timezone' => 'UTC',
    'secretsalt' => '$SALT',
    'auth.adminpassword' => 'admin-pw',
    'admin.protectindexpage' => false,
    'admin.protectmetadata' => false,
    'admin.checkforupdates' => false,
    // ReturnTo / RelayState targets: loopback on any port only.
    'trusted.url.domains' => ['127\\.0\\.0\\.1(:[0-9]+)?', 'localhost(:[0-9]+)?'],
    'trusted.url.regex' => true,
    'enable.http_post' => false,
    'assertion.allowed_clock_skew' => 180,
    'debug' => ['saml' => false, 'backtraces' => true, 'validatexml' => false],
    'showerrors' => true,
    'errorreporting' => false,
    'logging.level' => SimpleSAML\Logger::INFO,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'logging.processname' => 'simplesamlphp',
    'statistics.out' => [],
    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'enable.adfs-idp' => false,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true, 'admin' => true],
    'session.duration' => 8 * 60 * 60,
    'session.datastore.timeout' => 4 * 60 * 60,
    'session.state.timeout' => 60 * 60,
    'session.cookie.name' => 'SimpleSAMLSessionID',
    'session.cookie.lifetime' => 0,
    'session.cookie.path' => '/',
    'session.cookie.domain' => null,
    // Plain HTTP on loopback: a Secure cookie would never come back.
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'session.phpsession.cookiename' => 'SimpleSAML',
    'session.phpsession.savepath' => '$DIR/sessions',
    'session.phpsession.httponly' => true,
    'session.authtoken.cookiename' => 'SimpleSAMLAuthToken',
    'session.rememberme.enable' => false,
    'language.default' => 'en',
    'language.available' => ['en'],
    'language.cookie.secure' => false,
    'language.cookie.samesite' => null,
    'theme.use' => 'default',
    'template.auto_reload' => false,
    'production' => true,
    'store.type' => 'phpsession',
];
EOF

# 3. authsources.php: the users.
cat >"$DIR/config/authsources.php" <<'EOF'
<?php
// Generated by tests/peers/saml/start.sh; rewritten at every start.
$bulk = [];
for ($i = 0; $i < 2000; $i++) {
    $bulk[] = sprintf('bulk-%04d', $i);
}
$bulk[] = 'staff';

$config = [
    'admin' => ['core:AdminPassword'],
    'example-userpass' => [
        'exampleauth:UserPass',
        'alice:alice-pw' => [
            'uid' => ['alice'],
            'mail' => ['alice@example.org'],
            'displayName' => ['Alice Able'],
            'groups' => ['finance', 'staff'],
        ],
        'bob:bob-pw' => [
            'uid' => ['bob'],
            'mail' => ['bob@example.org'],
            'displayName' => ['Bob Baker'],
            'groups' => ['staff'],
        ],
        'many:many-pw' => [
            'uid' => ['many'],
            'mail' => ['many@example.org'],
            'displayName' => ['Many Groups'],
            'groups' => $bulk,
        ],
        'sid:sid-pw' => [
            'uid' => ['sid'],
            'mail' => ['sid@example.org'],
            'displayName' => ['Sid Windows'],
            'groups' => ['S-1-5-21-1-2-3-1101', 'CN=Finance,OU=Groups,DC=corp'],
        ],
        'rnd:rnd-pw' => [
            'uid' => ['rnd'],
            'mail' => ['rnd@example.org'],
            'displayName' => ['Rae Comma'],
            'groups' => ['R&D, Europe', 'staff,admins', '100% remote'],
        ],
    ],
];
EOF

# 4. The hosted IdP.
cat >"$DIR/metadata/saml20-idp-hosted.php" <<EOF
<?php
// Generated by tests/peers/saml/start.sh; rewritten at every start.
\$metadata['$ENTITY_ID'] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'example-userpass',
    'signature.algorithm' => '$sig_uri',
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    'simplesaml.nameidattribute' => 'uid',
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
    'saml20.sign.assertion' => $sign_assertion,
    'saml20.sign.response' => $sign_response,
    'sign.logout' => $sign_logout,
    'assertion.lifetime' => $lifetime,
    'logouttype' => 'traditional',
    'authproc' => [
        // Released as email (the user record says mail).
        10 => ['class' => 'core:AttributeMap', 'mail' => 'email'],
    ],
];
EOF

# 5. The SP, from its metadata XML (SimpleSAMLphp's parser), with the per-SP switches.
overrides=$(printf '{"saml20.sign.assertion":%s,"saml20.sign.response":%s,"assertion.encryption":%s,"signature.algorithm":"%s","sign.logout":%s,"NameIDFormat":"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent","simplesaml.nameidattribute":"uid","attributes.NameFormat":"urn:oasis:names:tc:SAML:2.0:attrname-format:basic","assertion.lifetime":%s}' \
  "$sign_assertion" "$sign_response" "$encrypt" "$sig_uri" "$sign_logout" "$lifetime")
out=$(SIMPLESAMLPHP_CONFIG_DIR="$DIR/config" "$PHP" -d display_errors=stderr -d error_reporting='E_ALL & ~E_DEPRECATED' \
  "$HERE/sp-remote.php" "$SSP" "$SP_XML" "$DIR/metadata/saml20-sp-remote.php" "$overrides" 2>&1) ||
  die "cannot register the SP from $SP_XML: $out"
cp "$SP_XML" "$DIR/metadata/sp-metadata.xml"

# 6. Document root: /simplesaml -> the package's www/.
ln -sfn "$SSP/www" "$DIR/docroot/simplesaml"

# 7. Serve (unless this DIR's server already runs), then wait for the metadata URL.
log="$DIR/log/php-server.log"
touch "$log" "$DIR/log/simplesamlphp.log"
offset=$(($(stat -c %s "$log") + 1))
ssp_offset=$(($(stat -c %s "$DIR/log/simplesamlphp.log") + 1))
if pid=$(running_pid); then
  say "php -S already running for $DIR (pid $pid)"
else
  echo "=== saml/start.sh $(date -u +%FT%TZ): http://127.0.0.1:$PORT/simplesaml/" >>"$log"
  # Several workers: a test's HTTP client and the gateway may talk to the IdP at the same time.
  SIMPLESAMLPHP_CONFIG_DIR="$DIR/config" PHP_CLI_SERVER_WORKERS=4 \
    "$PHP" -S "127.0.0.1:$PORT" -t "$DIR/docroot" \
    -d display_errors=0 -d log_errors=1 -d error_log="$DIR/log/php-errors.log" \
    -d error_reporting='E_ALL & ~E_DEPRECATED' -d session.gc_probability=0 \
    </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/php.pid"
  if [ -n "${GATEHOUSE_SAML_OWNER_PID:-}" ]; then
    owner=$GATEHOUSE_SAML_OWNER_PID
    (
      while alive "$owner" && alive "$pid"; do sleep 1; done
      if alive "$pid"; then
        # Workers first: the master does not pass SIGTERM on to them.
        for c in $(cat "/proc/$pid/task/"*/children 2>/dev/null); do kill -TERM "$c" 2>/dev/null || true; done
        kill -TERM "$pid" 2>/dev/null || true
      fi
    ) </dev/null >/dev/null 2>&1 &
    disown $!
  fi
  disown "$pid"
fi

fail() {
  echo "saml/start.sh: $*" >&2
  echo "---- php -S log ($log) ----" >&2
  tail -c +"$offset" "$log" >&2 || true
  echo "---- SimpleSAMLphp log ($DIR/log/simplesamlphp.log) ----" >&2
  tail -c +"$ssp_offset" "$DIR/log/simplesamlphp.log" >&2 || true
  echo "---- PHP errors ($DIR/log/php-errors.log) ----" >&2
  tail -n 50 "$DIR/log/php-errors.log" >&2 2>/dev/null || true
  echo "---- end of logs ----" >&2
  if alive "$pid"; then
    for c in $(cat "/proc/$pid/task/"*/children 2>/dev/null); do kill -TERM "$c" 2>/dev/null || true; done
    kill -TERM "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/php.pid"
  exit 1
}

deadline=$((SECONDS + 30))
until [ "$("$CURL" -s -o /dev/null -w '%{http_code}' --max-time 5 "$ENTITY_ID" 2>/dev/null)" = 200 ]; do
  alive "$pid" || fail "php -S (pid $pid) exited before the IdP answered"
  [ "$SECONDS" -lt "$deadline" ] || fail "$ENTITY_ID did not answer 200 within 30 s"
  sleep 0.05
done
"$CURL" -s --max-time 5 "$ENTITY_ID" | grep -q 'X509Certificate' ||
  fail "the IdP metadata at $ENTITY_ID carries no certificate"
say "IdP ready (pid $pid): $ENTITY_ID in $DIR"
