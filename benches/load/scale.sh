#!/usr/bin/env bash
# Scale figures of the release gateway (BENCHMARKS.md, "Scale"), on loopback only:
#   1. start-up time with APPS apps in the config (first start: empty store, migrations;
#      restart: the same store holding SESSIONS sessions);
#   2. resident memory with SESSIONS live sessions: that many sessions are written into the
#      store (SQLite), then wrk requests a signed-in app with every one of them in turn, so
#      each is read from the store once and then served from the session cache;
#   3. local-account sign-ins per second (login form, argon2id), with the gateway's CPU time
#      per sign-in;
#   4. a signed-in app's latency under wrk, alone and while SIGNIN_RATE sign-ins per second
#      run (sign-ins hash on the blocking pool, not on the proxy's workers);
#   5. the latency the gateway adds at one connection (median, upstream direct vs through
#      the gateway), each for SIGNIN_SECONDS;
#   6. the demo's (`gatehouse demo`) resident memory idle: after start and 200 requests, and
#      (unless SMOKE) again IDLE_AFTER_SIGNINS seconds after a few sign-ins, by when argon2's
#      working memory has been given back.
#
#   bash benches/load/scale.sh                     builds the release binary if needed
#   GATEHOUSE_BIN=… bash benches/load/scale.sh
#
# Settings: APPS (1000), SESSIONS (100000), LOAD_SECONDS (wrk's run over the sessions, 40),
# SIGNIN_SECONDS (10), SIGNIN_RATE (20), THREADS (gateway worker threads, 2), SMOKE=1 (a
# seconds-long run with 50 apps and 2,000 sessions that checks the script works),
# IDLE_AFTER_SIGNINS (80), KEEP_TMP=1.
# Prints a markdown report. Only the processes it starts are stopped (by PID).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

if [[ ${SMOKE:-0} == 1 ]]; then
    APPS=${APPS:-50} SESSIONS=${SESSIONS:-2000} LOAD_SECONDS=${LOAD_SECONDS:-3} SIGNIN_SECONDS=${SIGNIN_SECONDS:-2}
fi
APPS=${APPS:-1000}
SESSIONS=${SESSIONS:-100000}
LOAD_SECONDS=${LOAD_SECONDS:-40}
SIGNIN_SECONDS=${SIGNIN_SECONDS:-10}
SIGNIN_RATE=${SIGNIN_RATE:-20}
THREADS=${THREADS:-2}
IDLE_AFTER_SIGNINS=${IDLE_AFTER_SIGNINS:-80}
PASSWORD="scale harness password 1"

die() { echo "scale.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 is missing"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx is missing (apt-get install nginx-light)"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target-bench}
if [[ -z ${GATEHOUSE_BIN:-} ]]; then
    nice -n 10 cargo build --release -q -p gatehouse-gateway --bin gatehouse
    GATEHOUSE_BIN=$CARGO_TARGET_DIR/release/gatehouse
fi

# shellcheck source=benches/load/common.sh
source "$root/benches/load/common.sh"
make_tmp scale
free_port UP
free_port GH

mkdir -p "$TMP/gh"
start_upstream "$UP"
{
    cat <<EOF
[server]
listen = "127.0.0.1:$GH"
threads = $THREADS
shutdown_grace_period = "1s"

[[apps]]
slug = "signed"
upstreams = ["127.0.0.1:$UP"]
access = "authenticated"
EOF
    for i in $(seq -w 1 "$APPS"); do
        printf '\n[[apps]]\nslug = "app%s"\nupstreams = ["127.0.0.1:%s"]\naccess = "public"\n' "$i" "$UP"
    done
} >"$TMP/gh/gatehouse.toml"

printf '%s\n' "$PASSWORD" | "$GATEHOUSE_BIN" user add reader --config "$TMP/gh/gatehouse.toml" >"$TMP/users.log" 2>&1 ||
    die "user add failed: $(cat "$TMP/users.log")"

# Starts the gateway; sets GH_PID and STARTUP_MS (launch to the first 200 of healthz).
start_gateway() { # log
    local t0 t1
    t0=$(date +%s%N)
    GATEHOUSE_LOG=warn "$GATEHOUSE_BIN" serve --config "$TMP/gh/gatehouse.toml" >"$TMP/$1" 2>&1 &
    GH_PID=$!
    PIDS+=("$GH_PID")
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GH/.gatehouse/healthz" 2>/dev/null || true) == 200 ]]; do
        kill -0 "$GH_PID" 2>/dev/null || { show_logs; die "the gateway exited while starting"; }
        (( $(date +%s%N) - t0 < 120000000000 )) || { show_logs; die "the gateway did not start in two minutes"; }
        sleep 0.01
    done
    t1=$(date +%s%N)
    STARTUP_MS=$(( (t1 - t0) / 1000000 ))
}
stop_gateway() {
    kill -INT "$GH_PID"
    wait "$GH_PID" 2>/dev/null || true
}
status_kib() { # field (VmRSS, VmHWM, RssAnon, RssFile) [pid]
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/${2:-$GH_PID}/status"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$GH_PID/stat"; }

# 1. Start-up, empty store.
start_gateway first.log
FIRST_MS=$STARTUP_MS
curl -sf -o /dev/null "http://127.0.0.1:$GH/apps/app$(printf '%0*d' ${#APPS} "$APPS")/" ||
    die "the last of the $APPS apps is not served"
stop_gateway

# SESSIONS sessions of `reader`, written straight into the store: cookie value i as 43 digits.
python3 - "$TMP/gh/gatehouse.db" "$SESSIONS" <<'EOF'
import hashlib, sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
t = int(time.time())
con = sqlite3.connect(db)
con.executemany(
    "INSERT INTO sessions (id_hash, username, email, display_name, groups_json, admin, provider, created_at, last_seen)"
    " VALUES (?, 'reader', NULL, NULL, '[\"staff\"]', 0, 'local', ?, ?)",
    ((hashlib.sha256(f"{i:043d}".encode()).hexdigest(), t, t) for i in range(1, n + 1)),
)
con.commit()
EOF

# 2. Restart with them in the store, then every session in turn under wrk.
start_gateway second.log
RESTART_MS=$STARTUP_MS
IDLE_RSS=$(status_kib VmRSS)
IDLE_ANON=$(status_kib RssAnon)
cat >"$TMP/sessions.lua" <<EOF
local i = 0
request = function()
    i = i % $SESSIONS + 1
    return wrk.format("GET", "/apps/signed/", { ["Cookie"] = string.format("gatehouse_session=%043d", i) })
end
EOF
wrk -t1 -c16 -d"${LOAD_SECONDS}s" --latency -s "$TMP/sessions.lua" "http://127.0.0.1:$GH" >"$TMP/wrk-sessions.txt" 2>&1
grep -q "Non-2xx" "$TMP/wrk-sessions.txt" && { cat "$TMP/wrk-sessions.txt"; die "some session requests were refused"; }
LOADED_RSS=$(status_kib VmRSS)
LOADED_ANON=$(status_kib RssAnon)
PEAK_RSS=$(status_kib VmHWM)
SESSION_RPS=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$TMP/wrk-sessions.txt")
SESSION_REQS=$(awk '/requests in/ { print $1 }' "$TMP/wrk-sessions.txt")

# 3. Sign-ins as fast as they go (4 clients).
READER=$(sign_in "$GH" reader "$PASSWORD")
[[ $READER == *=* ]] || die "sign-in failed (see $TMP/second.log)"
c0=$(cpu_ticks)
read -r S_OK S_BAD S_SECS S_RATE < <(python3 "$root/benches/load/signins.py" "$GH" reader "$PASSWORD" "$SIGNIN_SECONDS" 0 4)
c1=$(cpu_ticks)
((S_OK > 0)) || die "no sign-in succeeded"
CPU_MS_PER_SIGNIN=$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$S_OK" 'BEGIN { printf "%.1f", t * 1000 / hz / n }')

# 4. A signed-in app's latency alone, then while SIGNIN_RATE sign-ins per second run.
latency() { # out
    wrk -t1 -c8 -d"${SIGNIN_SECONDS}s" --latency -H "Cookie: $READER" "http://127.0.0.1:$GH/apps/signed/" >"$1" 2>&1
}
p() { awk -v q="$2" '$1 == q { print $2 }' "$1"; }
rps() { awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$1"; }
latency "$TMP/wrk-alone.txt"
python3 "$root/benches/load/signins.py" "$GH" reader "$PASSWORD" "$SIGNIN_SECONDS" "$SIGNIN_RATE" 4 >"$TMP/signins-paced.txt" &
SIGNER=$!
latency "$TMP/wrk-signins.txt"
wait "$SIGNER"
read -r P_OK P_BAD _ P_RATE <"$TMP/signins-paced.txt"

# 5. Added latency at one connection: the upstream directly, then the signed-in app through
#    the gateway, one request at a time.
wrk -t1 -c1 -d"${SIGNIN_SECONDS}s" --latency "http://127.0.0.1:$UP/" >"$TMP/wrk-direct-1.txt" 2>&1
wrk -t1 -c1 -d"${SIGNIN_SECONDS}s" --latency -H "Cookie: $READER" "http://127.0.0.1:$GH/apps/signed/" >"$TMP/wrk-gateway-1.txt" 2>&1
us() { # wrk's "123.45us" / "1.23ms" / "1.2s" as microseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1000000 }'
}
DIRECT_P50=$(us "$(p "$TMP/wrk-direct-1.txt" 50%)")
GATEWAY_P50=$(us "$(p "$TMP/wrk-gateway-1.txt" 50%)")
ADDED_US=$(awk -v a="$DIRECT_P50" -v b="$GATEWAY_P50" 'BEGIN { printf "%.0f", b - a }')

stop_gateway

# 6. The demo, idle: after start and 200 requests; then after sign-ins and a quiet spell.
free_port DEMO
free_port DEMO_METRICS
GATEHOUSE_LOG=warn GATEHOUSE_VIEWER_PASSWORD="$PASSWORD" GATEHOUSE_ADMIN_PASSWORD="$PASSWORD" \
    "$GATEHOUSE_BIN" demo --listen "127.0.0.1:$DEMO" --metrics-listen "127.0.0.1:$DEMO_METRICS" \
    --dir "$TMP/demo" >"$TMP/demo.log" 2>&1 &
DEMO_PID=$!
PIDS+=("$DEMO_PID")
wait_http "http://127.0.0.1:$DEMO/.gatehouse/healthz" demo 200 "$DEMO_PID"
for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$DEMO/.gatehouse/login"
    curl -s -o /dev/null "http://127.0.0.1:$DEMO/"
done
sleep 3
memory_row() { # pid
    printf '%s MiB (anonymous %s, file-backed %s)' "$(mib "$(status_kib VmRSS "$1")")" \
        "$(mib "$(status_kib RssAnon "$1")")" "$(mib "$(status_kib RssFile "$1")")"
}
DEMO_IDLE=$(memory_row "$DEMO_PID")
read -r D_OK _ _ _ < <(python3 "$root/benches/load/signins.py" "$DEMO" viewer "$PASSWORD" 2 10 1)
((D_OK > 0)) || die "no sign-in to the demo succeeded (see $TMP/demo.log)"
DEMO_SIGNED=$(memory_row "$DEMO_PID")
DEMO_QUIET="(not measured: SMOKE)"
if [[ ${SMOKE:-0} != 1 ]]; then
    sleep "$IDLE_AFTER_SIGNINS"
    DEMO_QUIET=$(memory_row "$DEMO_PID")
fi

cat <<EOF
| figure | value |
|---|---:|
| start-up with $APPS apps, empty store (launch → healthz 200) | $FIRST_MS ms |
| start-up with $APPS apps and $SESSIONS sessions in the store | $RESTART_MS ms |
| RSS after start ($APPS apps) | $(mib "$IDLE_RSS") MiB (anonymous $(mib "$IDLE_ANON")) |
| RSS after $SESSION_REQS requests over $SESSIONS sessions ($SESSION_RPS req/s, ${LOAD_SECONDS} s) | $(mib "$LOADED_RSS") MiB (anonymous $(mib "$LOADED_ANON")), peak $(mib "$PEAK_RSS") |
| memory per cached session (anonymous growth / sessions) | $(awk -v a="$IDLE_ANON" -v b="$LOADED_ANON" -v n="$SESSIONS" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }') bytes |
| local sign-ins per second (4 clients, ${SIGNIN_SECONDS} s) | $S_RATE ($S_OK ok, $S_BAD failed) |
| gateway CPU per sign-in | $CPU_MS_PER_SIGNIN ms |
| signed-in app alone: req/s, p50, p99 | $(rps "$TMP/wrk-alone.txt"), $(p "$TMP/wrk-alone.txt" 50%), $(p "$TMP/wrk-alone.txt" 99%) |
| same, while $P_RATE sign-ins/s run ($P_OK ok, $P_BAD failed) | $(rps "$TMP/wrk-signins.txt"), $(p "$TMP/wrk-signins.txt" 50%), $(p "$TMP/wrk-signins.txt" 99%) |
| one connection: upstream direct p50, through the gateway (signed in) p50, added | ${DIRECT_P50} µs, ${GATEWAY_P50} µs, **${ADDED_US} µs** |
| demo, idle after start and 200 requests | $DEMO_IDLE |
| demo, right after $D_OK sign-ins | $DEMO_SIGNED |
| demo, ${IDLE_AFTER_SIGNINS} s after them | $DEMO_QUIET |

(nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg); gateway threads $THREADS; wrk -t1 -c16 over the sessions, -c8 for latency)
EOF
