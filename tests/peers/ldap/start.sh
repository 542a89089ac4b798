#!/usr/bin/env bash
# Starts a private OpenLDAP slapd for Gatehouse's LDAP tests, on loopback only.
#
#   tests/peers/ldap/start.sh DIR LDAP_PORT LDAPS_PORT
#
# First run on DIR (about a second): creates a test CA, a server certificate for 127.0.0.1 and
# localhost signed by it, and an unrelated CA (wrong-ca.pem) for negative tests; builds cn=config
# in DIR/slapd.d from config.ldif (mdb for dc=example,dc=org, memberof and ppolicy overlays,
# TLS); loads seed.ldif plus 2,000 generated groups with slapadd. Later runs on the same DIR skip
# all that and only start slapd again with the same data (a restart after stop.sh).
#
# slapd listens on ldap://127.0.0.1:LDAP_PORT/ (StartTLS available) and
# ldaps://127.0.0.1:LDAPS_PORT/, runs in the foreground of a background job with its log in
# DIR/slapd.log and its PID in DIR/slapd.pid. The script returns once a simple bind as the
# service account succeeds (at most 20 s; otherwise it prints this start's log and exits 1).
#
# If GATEHOUSE_LDAP_OWNER_PID is set, slapd is also terminated when that process ends (so a
# test process that dies without cleaning up leaves no slapd behind).
#
# Files in DIR: ca.pem (trust this), wrong-ca.pem, server.pem, server.key, slapd.d/, data/,
# seed-full.ldif (what was loaded), slapd.log, slapd.pid.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "ldap/start.sh: $*" >&2; exit 1; }
say() { echo "ldap/start.sh: $*"; }

[ $# -eq 3 ] || die "usage: $0 DIR LDAP_PORT LDAPS_PORT"
DIR=$1
LDAP_PORT=$2
LDAPS_PORT=$3
for p in "$LDAP_PORT" "$LDAPS_PORT"; do
  [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "not a port: $p"
done

BASE="dc=example,dc=org"
SERVICE_DN="cn=gatehouse,ou=services,$BASE"
SERVICE_PW="service-pw"

tool() {
  local t
  t=$(command -v "$1" 2>/dev/null || true)
  [ -n "$t" ] || { [ -x "/usr/sbin/$1" ] && t="/usr/sbin/$1"; }
  [ -n "$t" ] || die "$1 not found: OpenLDAP is not installed; run tests/peers/install.sh"
  echo "$t"
}
SLAPD=$(tool slapd)
SLAPADD=$(tool slapadd)
LDAPWHOAMI=$(tool ldapwhoami)
OPENSSL=$(tool openssl)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
case "$DIR" in *[[:space:]]*) die "DIR must not contain white space: $DIR" ;; esac

# Does process $1 exist and is it not a zombie?
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Is the PID in DIR/slapd.pid a live slapd serving this DIR?
running_pid() {
  local pid
  [ -f "$DIR/slapd.pid" ] || return 1
  pid=$(<"$DIR/slapd.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-F $DIR/slapd.d " || return 1
  echo "$pid"
}

# 1. Certificates (EC P-256): a test CA, a server certificate for 127.0.0.1/localhost, an
#    unrelated CA.
if [ ! -s "$DIR/ca.pem" ] || [ ! -s "$DIR/server.pem" ] || [ ! -s "$DIR/server.key" ] ||
  [ ! -s "$DIR/wrong-ca.pem" ]; then
  cnf="$DIR/openssl.cnf"
  cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost@HOSTNAME_SAN@
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  # libldap (ldapsearch & co.) checks ldaps://localhost against this machine's host name, not
  # "localhost", so that name is in the certificate too.
  host=$(hostname 2>/dev/null || true)
  san=""
  if [[ "$host" =~ ^[A-Za-z0-9.-]+$ ]] && [ "$host" != localhost ]; then san=", DNS:$host"; fi
  sed -i "s/@HOSTNAME_SAN@/$san/" "$cnf"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  "$OPENSSL" req -config "$cnf" -x509 "${ec[@]}" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" \
    -days 3650 -subj "/O=Gatehouse tests/CN=Gatehouse test LDAP CA" -extensions ca_ext 2>/dev/null
  "$OPENSSL" req -config "$cnf" -x509 "${ec[@]}" -keyout "$DIR/wrong-ca.key" -out "$DIR/wrong-ca.pem" \
    -days 3650 -subj "/O=Somebody else/CN=Unrelated test CA" -extensions ca_ext 2>/dev/null
  "$OPENSSL" req -config "$cnf" -new "${ec[@]}" -keyout "$DIR/server.key" -out "$DIR/server.csr" \
    -subj "/O=Gatehouse tests/CN=localhost" 2>/dev/null
  "$OPENSSL" x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
    -set_serial "0x$("$OPENSSL" rand -hex 8)" -days 3650 -extfile "$cnf" -extensions server_ext \
    -out "$DIR/server.pem" 2>/dev/null
  rm -f "$DIR/server.csr"
  chmod 600 "$DIR/ca.key" "$DIR/wrong-ca.key" "$DIR/server.key"
fi

# 2. cn=config.
if [ ! -f "$DIR/.config-done" ]; then
  rm -rf "$DIR/slapd.d" "$DIR/data" "$DIR/.seed-done"
  mkdir -p "$DIR/slapd.d" "$DIR/data"
  config=$(<"$HERE/config.ldif")
  printf '%s\n' "${config//@DIR@/$DIR}" >"$DIR/config.ldif"
  out=$("$SLAPADD" -n0 -F "$DIR/slapd.d" -l "$DIR/config.ldif" 2>&1) ||
    die "slapadd -n0 failed: $out"
  touch "$DIR/.config-done"
fi

# 3. Seed: seed.ldif + cn=bulk-0000 … cn=bulk-1999 (member uid=many), then one memberOf value
#    per groupOfNames membership (slapadd does not run the memberof overlay), loaded in one go.
if [ ! -f "$DIR/.seed-done" ]; then
  rm -rf "$DIR/data"
  mkdir -p "$DIR/data"
  {
    cat "$HERE/seed.ldif"
    echo
    seq -f %04g 0 1999 | awk -v base="$BASE" '{
      printf "dn: cn=bulk-%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: bulk-%s\nmember: uid=many,ou=people,%s\n\n", $1, base, $1, base
    }'
  } >"$DIR/seed-groups.ldif"
  # Pass 1 collects, for each member DN (compared case-insensitively, as written), the groups
  # naming it; pass 2 appends memberOf lines to each entry.
  awk '
    function flush() {
      if (dn != "") { k = tolower(dn); for (i = 1; i <= n[k]; i++) print "memberOf: " g[k, i] }
      dn = ""
    }
    NR == FNR {
      if ($0 ~ /^dn:: /) { print "base64 DNs are not supported by the memberOf pass" > "/dev/stderr"; exit 2 }
      if ($0 ~ /^dn: /) cur = substr($0, 5)
      else if ($0 == "") cur = ""
      else if (cur != "" && $0 ~ /^member: /) { k = tolower(substr($0, 9)); g[k, ++n[k]] = cur }
      next
    }
    /^dn: / { dn = substr($0, 5) }
    $0 == "" { flush() }
    { print }
    END { flush() }
  ' "$DIR/seed-groups.ldif" "$DIR/seed-groups.ldif" >"$DIR/seed-full.ldif"
  rm -f "$DIR/seed-groups.ldif"
  out=$("$SLAPADD" -q -F "$DIR/slapd.d" -b "$BASE" -l "$DIR/seed-full.ldif" 2>&1) ||
    die "slapadd of the seed failed: $out"
  touch "$DIR/.seed-done"
fi

# 4. Start (unless this DIR's slapd already runs) and wait for a service bind.
whoami_ok() {
  LDAPNOINIT=1 "$LDAPWHOAMI" -x -o nettimeout=2 -H "ldap://127.0.0.1:$LDAP_PORT/" \
    -D "$SERVICE_DN" -w "$SERVICE_PW" >/dev/null 2>&1
}

log="$DIR/slapd.log"
touch "$log"
offset=$(($(stat -c %s "$log") + 1))
if pid=$(running_pid); then
  say "slapd already running for $DIR (pid $pid)"
else
  echo "=== ldap/start.sh $(date -u +%FT%TZ): ldap://127.0.0.1:$LDAP_PORT/ ldaps://127.0.0.1:$LDAPS_PORT/" >>"$log"
  "$SLAPD" -F "$DIR/slapd.d" -h "ldap://127.0.0.1:$LDAP_PORT/ ldaps://127.0.0.1:$LDAPS_PORT/" \
    -d stats </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/slapd.pid"
  if [ -n "${GATEHOUSE_LDAP_OWNER_PID:-}" ]; then
    owner=$GATEHOUSE_LDAP_OWNER_PID
    (
      while alive "$owner" && alive "$pid"; do sleep 1; done
      if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    ) </dev/null >/dev/null 2>&1 &
    disown $!
  fi
  disown "$pid"
fi

fail() {
  echo "ldap/start.sh: $*" >&2
  echo "---- slapd log ($log) ----" >&2
  tail -c +"$offset" "$log" >&2 || true
  echo "---- end of slapd log ----" >&2
  if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -f "$DIR/slapd.pid"
  exit 1
}

deadline=$((SECONDS + 20))
until whoami_ok; do
  alive "$pid" || fail "slapd (pid $pid) exited before accepting binds"
  [ "$SECONDS" -lt "$deadline" ] || fail "no successful service bind on 127.0.0.1:$LDAP_PORT within 20 s"
  sleep 0.05
done
say "slapd ready (pid $pid): ldap://127.0.0.1:$LDAP_PORT/ ldaps://127.0.0.1:$LDAPS_PORT/ in $DIR"
