#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: Gatehouse (public app,
# signed-in app, a person in 2,000 groups) against pingora-min (a bare pingora ProxyHttp,
# the floor of any pingora-based proxy) in front of the same nginx upstream.
#
# Unlike wrk's requests per second, an instruction count does not depend on what else the
# machine is doing (same binary, same inputs: the same count, to a fraction of a percent), so
# it can be compared between commits on a busy machine. It counts user-space work only: the
# kernel's share of each request (the socket system calls, the same for every row) is not in
# it. Use it to see what Gatehouse adds on top of pingora and where, not for absolute speed.
#
#   bash benches/load/instructions.sh            builds the release binaries if needed
#   GATEHOUSE_BIN=… PINGORA_MIN_BIN=… bash benches/load/instructions.sh
#
# Settings: REQUESTS (counted requests per row, default 2000), WARMUP (uncounted requests
# first, default 300), TOP (functions listed per row, default 12; 0: none), KEEP_TMP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-300}
TOP=${TOP:-12}
PASSWORD="load-harness-password"

die() { echo "instructions.sh: $*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
command -v curl >/dev/null || die "curl is missing"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx is missing (apt-get install nginx-light)"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target-bench}
if [[ -z ${GATEHOUSE_BIN:-} ]]; then
    nice -n 10 cargo build --release -q -p gatehouse-gateway --bin gatehouse -p gatehouse-benches --bin pingora-min
    GATEHOUSE_BIN=$CARGO_TARGET_DIR/release/gatehouse
    PINGORA_MIN_BIN=$CARGO_TARGET_DIR/release/pingora-min
fi
[[ -x ${PINGORA_MIN_BIN:-} ]] || die "give PINGORA_MIN_BIN with GATEHOUSE_BIN"

# shellcheck source=benches/load/common.sh
source "$root/benches/load/common.sh"
make_tmp instr

free_port UP
free_port MIN
free_port GH
mkdir -p "$TMP/gh"
start_upstream "$UP"
cat >"$TMP/gh/gatehouse.toml" <<EOF
[server]
listen = "127.0.0.1:$GH"
threads = 1
shutdown_grace_period = "1s"

[[apps]]
slug = "bench"
upstreams = ["127.0.0.1:$UP"]
access = "public"

[[apps]]
slug = "signed"
upstreams = ["127.0.0.1:$UP"]
access = "authenticated"

[[apps]]
slug = "groups"
upstreams = ["127.0.0.1:$UP"]
access = "restricted"
allow_groups = ["g1000"]
EOF

groups=()
for g in $(seq 2000); do groups+=(--group "g$g"); done
printf '%s\n' "$PASSWORD" | "$GATEHOUSE_BIN" user add reader --config "$TMP/gh/gatehouse.toml" >"$TMP/users.log" 2>&1 ||
    die "user add failed: $(cat "$TMP/users.log")"
printf '%s\n' "$PASSWORD" | "$GATEHOUSE_BIN" user add heavy "${groups[@]}" --config "$TMP/gh/gatehouse.toml" >>"$TMP/users.log" 2>&1 ||
    die "user add failed: $(cat "$TMP/users.log")"

# Sign-ins happen on a plain Gatehouse (argon2 under valgrind takes long); the sessions are
# in the store, so the measured processes below find them there.
GATEHOUSE_LOG=warn "$GATEHOUSE_BIN" serve --config "$TMP/gh/gatehouse.toml" >"$TMP/signin.log" 2>&1 &
SIGNIN_PID=$!
PIDS+=("$SIGNIN_PID")
wait_http "http://127.0.0.1:$GH/.gatehouse/healthz" gatehouse 200 "$SIGNIN_PID"

READER=$(sign_in "$GH" reader "$PASSWORD")
HEAVY=$(sign_in "$GH" heavy "$PASSWORD")
[[ $READER == *=* && $HEAVY == *=* ]] || die "sign-in failed (see $TMP/signin.log)"
kill "$SIGNIN_PID"
wait "$SIGNIN_PID" 2>/dev/null || true

# `n` requests to `url` on one kept-alive connection (one curl process), each checked to
# return the upstream's 1 KiB.
requests() { # n url [cookie]
    local n=$1 url=$2 cookie=${3:-} i
    {
        # Options apply to every URL of the file: the cookie once, an output per URL.
        printf 'write-out = "%%{http_code} %%{size_download}\\n"\n'
        [[ -n $cookie ]] && printf 'header = "Cookie: %s"\n' "$cookie"
        for ((i = 0; i < n; i++)); do
            printf 'url = "%s"\noutput = "/dev/null"\n' "$url"
        done
    } >"$TMP/curl.cfg"
    local bad
    curl -s -K "$TMP/curl.cfg" >"$TMP/curl.out" || true
    bad=$(grep -vc '^200 1024$' "$TMP/curl.out" || true)
    [[ $bad == 0 ]] || die "$bad of $n requests to $url did not return the upstream's body: $(sort "$TMP/curl.out" | uniq -c | head -3)"
}

# One row: a fresh process under callgrind (instrumented only once told to: startup and the
# warm-up run at valgrind's plain speed), `WARMUP` requests, then `REQUESTS` counted ones,
# dumped, and the process stopped. Prints nothing; the row goes to ROWS.
measure() { # label port url cookie command...
    local label=$1 port=$2 url=$3 cookie=$4
    shift 4
    local n=${#ROWS[@]}
    local out=$TMP/row$n.out
    echo "$(date +%T) $label" >&2
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" >"$TMP/row$n.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    # Any answer: the signed-in rows' apps redirect a request without their cookie.
    wait_http "http://127.0.0.1:$port$url" "$label" any "$pid"
    requests "$WARMUP" "http://127.0.0.1:$port$url" "$cookie"
    callgrind_control -i on "$pid" >/dev/null 2>&1
    requests "$REQUESTS" "http://127.0.0.1:$port$url" "$cookie"
    callgrind_control -d "$label" "$pid" >/dev/null 2>&1
    kill -INT "$pid" # pingora's fast shutdown (TERM waits out a grace period)
    wait "$pid" 2>/dev/null || true
    local total
    total=$(awk '/^summary:/ { print $2 }' "$out.1" 2>/dev/null)
    [[ -n $total ]] || die "no counts for $label (see $TMP/row$n.log)"
    ROWS+=("$label|$total|$out.1")
}

gh=("$GATEHOUSE_BIN" serve --config "$TMP/gh/gatehouse.toml")
export GATEHOUSE_LOG=warn
ROWS=()
measure "pingora-min" "$MIN" / "" "$PINGORA_MIN_BIN" "127.0.0.1:$MIN" "127.0.0.1:$UP" 1
measure "Gatehouse, public app" "$GH" /apps/bench/ "" "${gh[@]}"
measure "Gatehouse, signed-in" "$GH" /apps/signed/ "$READER" "${gh[@]}"
measure "Gatehouse, user in 2,000 groups" "$GH" /apps/groups/ "$HEAVY" "${gh[@]}"

floor=""
echo "| row | instructions per request | vs pingora-min |"
echo "|---|---:|---:|"
for r in "${ROWS[@]}"; do
    IFS='|' read -r label total _ <<<"$r"
    per=$((total / REQUESTS))
    [[ -z $floor ]] && floor=$per
    printf '| %s | %s | %s |\n' "$label" "$per" "$(awk -v a="$per" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')"
done
echo
echo "($REQUESTS counted requests per row after $WARMUP uncounted; 1 thread; GATEHOUSE_LOG=warn, as the load harness runs it)"
if [[ $TOP -gt 0 ]]; then
    for r in "${ROWS[@]}"; do
        IFS='|' read -r label _ dump <<<"$r"
        echo
        echo "### $label: top $TOP functions by own instructions"
        echo '```'
        callgrind_annotate --threshold=100 "$dump" 2>/dev/null |
            awk '/^-+$/ { sep++; next } sep >= 3 && NF' | head -n "$TOP" |
            sed -E 's/ \[[^]]*\]$//' | cut -c1-160 || true
        echo '```'
    done
fi
