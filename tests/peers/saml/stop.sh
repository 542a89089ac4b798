#!/usr/bin/env bash
# Stops the PHP built-in server that tests/peers/saml/start.sh started for DIR and waits until it
# (and its workers) have exited: SIGTERM, then SIGKILL after 10 s. Keys, config and sessions
# stay: start.sh DIR PORT SP_METADATA_XML starts it again.
#
#   tests/peers/saml/stop.sh DIR
#
# Only the process named in DIR/php.pid (and its worker children) is signalled, and only if it is
# a php -S serving DIR/docroot.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 1; }
[ -d "$1" ] || { echo "saml/stop.sh: no such directory: $1" >&2; exit 1; }
DIR=$(cd "$1" && pwd)
pidfile="$DIR/php.pid"

alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "-t $DIR/docroot "; }
# The server's worker processes (PHP_CLI_SERVER_WORKERS): its children running the same command.
workers() {
  local c
  for c in $(cat "/proc/$1/task/"*/children 2>/dev/null); do
    ours "$c" && echo "$c"
  done
}

[ -f "$pidfile" ] || { echo "saml/stop.sh: not running (no $pidfile)"; exit 0; }
pid=$(<"$pidfile")
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! alive "$pid" || ! ours "$pid"; then
  rm -f "$pidfile"
  echo "saml/stop.sh: not running"
  exit 0
fi

# The master does not pass SIGTERM on to its workers (they would linger, still accepting on the
# port): signal each of them, then the master.
children=$(workers "$pid")
for c in $children; do kill -TERM "$c" 2>/dev/null || true; done
kill -TERM "$pid" 2>/dev/null || true
gone() {
  local p
  for p in "$pid" $children; do alive "$p" && return 1; done
  return 0
}
for _ in $(seq 1 200); do
  gone && break
  sleep 0.05
done
if ! gone; then
  echo "saml/stop.sh: php -S (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
  for p in "$pid" $children; do alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    gone && break
    sleep 0.05
  done
  gone || { echo "saml/stop.sh: php -S (pid $pid) did not exit" >&2; exit 1; }
fi
rm -f "$pidfile"
echo "saml/stop.sh: stopped php -S (pid $pid)"
