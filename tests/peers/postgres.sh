#!/usr/bin/env bash
# Makes sure PostgreSQL accepts connections on 127.0.0.1:5432 and that the URL the store
# tests use (GATEHOUSE_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres) may
# create databases. For a fresh Debian 12 machine, run as root (or with sudo).
#
# Idempotent: when all is in place it only checks, in well under a second. It never stops
# or restarts a running server; it may add a trust line for 127.0.0.1 to pg_hba.conf and
# reload, which is fine on a throwaway test machine and nowhere else.
set -euo pipefail

URL="${GATEHOUSE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
HOST=127.0.0.1
PORT=5432

say() { echo "postgres.sh: $*"; }
die() { echo "postgres.sh: $*" >&2; exit 1; }

# The URL with its password, if any, hidden.
shown_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$URL"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres -- "$@"; fi
}

ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$HOST" -p "$PORT"; }

# 1. A server on 127.0.0.1:5432.
if ready; then
  say "a server already accepts connections on $HOST:$PORT"
else
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! compgen -G '/etc/postgresql/*/main' >/dev/null; then
    say "installing the postgresql package"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(find /etc/postgresql -mindepth 2 -maxdepth 2 -name main -printf '%h\n' 2>/dev/null |
    xargs -r -n1 basename | sort -V | tail -n1)
  [ -n "$version" ] || die "no cluster under /etc/postgresql after installing postgresql"
  status=$(pg_lsclusters -h "$version" main 2>/dev/null | awk '{print $4}')
  if [ "$status" = "online" ]; then
    die "cluster $version/main is running but not on $HOST:$PORT ($(pg_lsclusters -h "$version" main)); not touching it"
  fi
  say "starting cluster $version/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 60); do
    ready && break
    sleep 0.5
  done
  ready || die "cluster $version/main started but $HOST:$PORT does not accept connections; see /var/log/postgresql/postgresql-$version-main.log"
  say "cluster $version/main accepts connections on $HOST:$PORT"
fi

# 2. The test URL may connect and create databases.
connects() { psql "$URL" -Atqc 'SELECT 1' >/dev/null 2>&1; }
can_create() {
  [ "$(psql "$URL" -Atqc 'SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user' 2>/dev/null)" = "t" ]
}

if can_create; then
  say "$(shown_url) connects and may create databases"
  exit 0
fi

case "$URL" in
  *@127.0.0.1[:/]* | *@localhost[:/]* | *://127.0.0.1[:/]* | *://localhost[:/]*) ;;
  *) die "$(shown_url) cannot connect or create databases, and it is not this machine's server: fix it by hand" ;;
esac

# The role the URL names (libpq defaults to the OS user name).
role=$(sed -nE 's#^[a-z]+://([^:@/]+)(:[^@/]*)?@.*#\1#p' <<<"$URL")
role=${role:-$(id -un)}
marker="# added by gatehouse tests/peers/postgres.sh (throwaway test machine only)"

# Fixed over the unix socket as the postgres superuser (peer authentication on Debian).
if ! connects; then
  hba=$(as_postgres psql -Atqc 'SHOW hba_file')
  if ! as_root head -n 1 "$hba" | grep -qF "$marker"; then
    # The first matching line wins in pg_hba.conf, so ours goes at the top.
    line="host all all 127.0.0.1/32 trust"
    tmp=$(mktemp)
    { echo "$marker"; echo "$line"; as_root cat "$hba"; } >"$tmp"
    as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"
    rm -f "$tmp"
    say "added '$line' at the top of $hba (TEST MACHINES ONLY: any local process may log in as any role over TCP)"
  fi
  as_postgres psql -Atqc 'SELECT pg_reload_conf()' >/dev/null
  say "reloaded the server configuration"
fi

sql_role=${role//\"/\"\"}
exists=$(as_postgres psql -Atq -c "SELECT 1 FROM pg_roles WHERE rolname = '${role//\'/\'\'}'")
if [ "$exists" != "1" ]; then
  as_postgres psql -q -v ON_ERROR_STOP=1 -c "CREATE ROLE \"$sql_role\" LOGIN CREATEDB"
  say "created role $role (LOGIN CREATEDB)"
elif ! can_create; then
  as_postgres psql -q -v ON_ERROR_STOP=1 -c "ALTER ROLE \"$sql_role\" LOGIN CREATEDB"
  say "granted LOGIN CREATEDB to role $role"
fi

can_create || die "$(shown_url) still cannot connect or create databases; check pg_hba.conf and the server log"
say "$(shown_url) connects and may create databases"
