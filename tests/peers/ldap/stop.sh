#!/usr/bin/env bash
# Stops the slapd that tests/peers/ldap/start.sh started for DIR and waits until it has exited
# (SIGTERM, then SIGKILL after 10 s). The data stays: start.sh DIR … starts it again.
#
#   tests/peers/ldap/stop.sh DIR
#
# Only the process named in DIR/slapd.pid is signalled, and only if it is a slapd serving DIR.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 1; }
[ -d "$1" ] || { echo "ldap/stop.sh: no such directory: $1" >&2; exit 1; }
DIR=$(cd "$1" && pwd)
pidfile="$DIR/slapd.pid"

alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "-F $DIR/slapd.d "; }

[ -f "$pidfile" ] || { echo "ldap/stop.sh: not running (no $pidfile)"; exit 0; }
pid=$(<"$pidfile")
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! alive "$pid" || ! ours "$pid"; then
  rm -f "$pidfile"
  echo "ldap/stop.sh: not running"
  exit 0
fi

kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 200); do
  alive "$pid" || break
  sleep 0.05
done
if alive "$pid"; then
  echo "ldap/stop.sh: slapd (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    alive "$pid" || break
    sleep 0.05
  done
  alive "$pid" && { echo "ldap/stop.sh: slapd (pid $pid) did not exit" >&2; exit 1; }
fi
rm -f "$pidfile"
echo "ldap/stop.sh: stopped slapd (pid $pid)"
