#!/usr/bin/env bash
# Gatehouse vs nginx, haproxy, Caddy, nginx auth_request and bare pingora under wrk, in ONE
# run, on loopback only.
#
# Starts, each on a free 127.0.0.1 port (none of them a system service):
#   upstream      nginx answering every path with a fixed small body from memory (no disk
#                 IO), shared by every proxy, so it is the same for all and cheap;
#   nginx         a reverse proxy to the upstream (worker_processes = THREADS, keepalive);
#   haproxy       the same in HAProxy (nbthread = THREADS, http-reuse always);
#   caddy         the same in Caddy (`reverse_proxy`);
#   nginx_auth    nginx with `auth_request` to a separate tiny auth service (authsvc: an
#                 nginx answering 204) before proxying — the usual oauth2-proxy shape, with
#                 the cheapest possible auth service; its row's CPU is nginx_auth's, and the
#                 auth service's is reported beside it;
#   pingora_min   a minimal pingora ProxyHttp (benches/src/bin/pingora-min.rs): pingora's
#                 own floor, with Gatehouse's server settings and allocator;
#   gatehouse     `gatehouse serve` (usage recording on, the default) with three apps:
#                 /apps/bench/ public; /apps/signed/ for anyone signed in (requests carry a
#                 session cookie: session cache, policy, identity headers + JWT);
#                 /apps/groups/ restricted to one group, requested by a user in 2,000
#                 groups (groups_sent = "referenced");
#   gatehouse_off the public app with usage recording off ([usage] enabled = false).
# Then runs wrk against every target, interleaved over ROUNDS rounds (the order rotates every
# round), and prints a markdown table: requests/s, latency p50/p99, CPU time per request of
# the server under test (from /proc/<pid>/stat), its peak RSS, the CPU share of other
# processes, and ratios to nginx. wrk sends `Sec-Fetch-Dest: document` to every target, so
# every request Gatehouse serves is a visit it counts (the worst case for the recorder).
# Absolute numbers depend on the machine; compare ratios of the same run.
#
# Settings (environment):
#   THREADS=2          proxy worker threads / worker processes of every proxy
#   UPSTREAM_WORKERS=1 worker processes of the upstream nginx
#   WRK_THREADS=2 CONNECTIONS=50 DURATION=10s ROUNDS=3 WARMUP=2s
#   PIN=0              1: wrk on CPU 0, every server on CPU 1 (taskset); set THREADS=1 and
#                      WRK_THREADS=1 with it to reproduce the issue's one-core-each setup
#   TARGETS=           only these rows (space-separated names above; default: all)
#   BODY_BYTES=1024    size of the upstream's response body
#   ACCESS_LOG=off     on: nginx writes an access log, Gatehouse logs each request (info)
#   GATEHOUSE_REV=     build this commit (e.g. HEAD) from `git archive` instead of the work
#                      tree, so unfinished edits are neither measured nor break the build
#   GATEHOUSE_BIN=, PINGORA_MIN_BIN=  use these binaries instead of building them
#   CARGO_TARGET_DIR   default $HOME/.cache/gatehouse/target-bench (never the debug dir)
#   OUT=               also write the markdown report to this file
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw wrk output)
#   WAIT_QUIET=        e.g. 25: before each round wait until other processes use < 25 % of
#                      the CPUs (at most QUIET_MAX_WAIT=300 s); off by default
#   SMOKE=1            seconds-long run (1 round, 1 s per target) that checks the harness
#                      works and prints its table — the test command runs it with the debug
#                      binaries; its numbers mean nothing
#
# Only the processes this script starts are stopped (by PID, on exit).
set -euo pipefail

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    DURATION=${DURATION:-1s} ROUNDS=${ROUNDS:-1} WARMUP=${WARMUP:-1s} CONNECTIONS=${CONNECTIONS:-8}
fi
THREADS=${THREADS:-2}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
WRK_THREADS=${WRK_THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
PIN=${PIN:-0}
TARGETS=${TARGETS:-}
BODY_BYTES=${BODY_BYTES:-1024}
ACCESS_LOG=${ACCESS_LOG:-off}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
GATEHOUSE_REV=${GATEHOUSE_REV:-}
WAIT_QUIET=${WAIT_QUIET:-}
QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-300}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target-bench}

ALL_TARGETS=(upstream nginx haproxy caddy nginx_auth pingora_min gatehouse gatehouse_signed gatehouse_groups gatehouse_off)
PASSWORD="load harness password 1"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
REQUEST_PATH=/apps/bench/index.html
# Path each target is asked for (Gatehouse rows differ by app).
path_of() {
    case $1 in
    gatehouse_signed) echo /apps/signed/index.html ;;
    gatehouse_groups) echo /apps/groups/index.html ;;
    *) echo "$REQUEST_PATH" ;;
    esac
}
# Makes every request a page load (a "visit" the usage recorder counts).
VISIT_HEADER="Sec-Fetch-Dest: document"

log() { printf '[load] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---- tools ---------------------------------------------------------------------------------

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed'; }

ensure_tools() {
    local want=()
    if ! command -v nginx >/dev/null 2>&1 && ! installed nginx-light && ! installed nginx; then
        want+=(nginx-light)
    fi
    if ! command -v wrk >/dev/null 2>&1 && ! installed wrk; then
        want+=(wrk)
    fi
    command -v curl >/dev/null 2>&1 || want+=(curl)
    command -v haproxy >/dev/null 2>&1 || want+=(haproxy)
    command -v caddy >/dev/null 2>&1 || want+=(caddy)
    if ((${#want[@]})); then
        log "installing ${want[*]} from Debian"
        apt-get update -qq
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}"; then
            # Some releases ship nginx-light only as a transitional package; take nginx.
            want=("${want[@]/nginx-light/nginx}")
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}"
        fi
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $NGINX ]] || die "nginx not found after install"
    command -v wrk >/dev/null || die "wrk not found after install"
}

build_gatehouse() {
    if [[ -n ${GATEHOUSE_BIN:-} ]]; then
        [[ -x $GATEHOUSE_BIN ]] || die "GATEHOUSE_BIN=$GATEHOUSE_BIN is not executable"
        [[ -n ${PINGORA_MIN_BIN:-} && -x $PINGORA_MIN_BIN ]] ||
            die "with GATEHOUSE_BIN, give PINGORA_MIN_BIN too (cargo build -p gatehouse-benches --bin pingora-min)"
        BUILT_FROM="the given binary $GATEHOUSE_BIN"
        return
    fi
    local src=$ROOT rev
    if [[ -n $GATEHOUSE_REV ]]; then
        # A committed revision, exported (git archive) so that edits in the work tree,
        # finished or not, are not measured.
        rev=$(git -C "$ROOT" rev-parse --short "$GATEHOUSE_REV^{commit}") ||
            die "GATEHOUSE_REV=$GATEHOUSE_REV is not a commit"
        # Beside the target dir, at a fixed path: files keep the commit's time, so cargo
        # rebuilds nothing when the same commit is measured again.
        src=${CARGO_TARGET_DIR%/}-src
        rm -rf "$src"
        mkdir -p "$src"
        git -C "$ROOT" archive "$rev" | tar -x -C "$src"
        BUILT_FROM="commit $rev (git archive)"
    else
        BUILT_FROM="the work tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
        git -C "$ROOT" diff --quiet HEAD 2>/dev/null || BUILT_FROM+=" + uncommitted changes"
    fi
    log "building the release binary from $BUILT_FROM in $CARGO_TARGET_DIR (nice -n 10)"
    (cd "$src" && nice -n 10 cargo build --release --locked -p gatehouse-gateway --bin gatehouse \
        -p gatehouse-benches --bin pingora-min) >&2
    # Private copies: another build in the same target dir cannot replace them mid-run.
    cp "$CARGO_TARGET_DIR/release/gatehouse" "$TMP/gatehouse-bin"
    cp "$CARGO_TARGET_DIR/release/pingora-min" "$TMP/pingora-min-bin"
    GATEHOUSE_BIN=$TMP/gatehouse-bin
    PINGORA_MIN_BIN=$TMP/pingora-min-bin
}

# ---- processes -----------------------------------------------------------------------------

PIDS=()
TMP=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $TMP && $KEEP_TMP != 1 ]]; then
        rm -rf "$TMP"
    elif [[ -n $TMP ]]; then
        log "kept $TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=benches/load/common.sh
source "$ROOT/benches/load/common.sh"

# user+system CPU ticks of a process and its direct children (nginx workers).
cpu_ticks() {
    local pid=$1 total=0 p f
    for p in "$pid" $(pgrep -P "$pid" || true); do
        [[ -r /proc/$p/stat ]] || continue
        f=$(</proc/"$p"/stat)
        f=${f##*) } # fields after "(comm) "; utime and stime are fields 14 and 15
        read -r -a a <<<"$f"
        total=$((total + a[11] + a[12]))
    done
    echo "$total"
}

# Peak resident memory (VmHWM) of a process and its direct children, in MiB.
rss_peak_mib() {
    local pid=$1 total=0 p kb
    for p in "$pid" $(pgrep -P "$pid" || true); do
        kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    awk -v k="$total" 'BEGIN { printf "%.0f", k / 1024 }'
}

# Machine-wide CPU ticks since boot: "busy total", busy being user..steal (idle and iowait
# are not). irq/softirq time counts as busy: softirq work done in a process's context (most
# loopback networking) is in that process's stime too, as measured here.
stat_ticks() {
    local c
    read -r -a c </proc/stat
    echo "$((c[1] + c[2] + c[3] + c[6] + c[7] + c[8]))" \
        "$((c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7] + c[8]))"
}

# Share of all CPUs busy (any process) over a 2 s sample, in percent.
cpu_busy() {
    local a b
    read -r -a a <<<"$(stat_ticks)"
    sleep 2
    read -r -a b <<<"$(stat_ticks)"
    awk -v u="$((b[0] - a[0]))" -v t="$((b[1] - a[1]))" 'BEGIN { printf "%.0f", t ? 100 * u / t : 0 }'
}

# With WAIT_QUIET=N: wait (at most QUIET_MAX_WAIT seconds) until the machine, with our
# servers idle, is less than N % busy, so a round does not start during someone's build.
wait_quiet() {
    [[ -n $WAIT_QUIET ]] || return 0
    local busy waited=0
    while busy=$(cpu_busy) && ((busy >= WAIT_QUIET && waited < QUIET_MAX_WAIT)); do
        log "machine $busy % busy (other processes); waiting for < $WAIT_QUIET %"
        sleep 8
        waited=$((waited + 10))
    done
}

# ---- configs -------------------------------------------------------------------------------

nginx_common() { # prefix
    cat <<EOF
pid $1/nginx.pid;
error_log $1/error.log warn;
daemon off;
events { worker_connections 4096; }
EOF
}

nginx_temp_paths() { # prefix
    cat <<EOF
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
EOF
}

proxy_nginx_conf() { # dir port extra-server-lines location-lines extra-http-lines
    nginx_common "$TMP/$1"
    echo "worker_processes $THREADS;"
    cat <<EOF
http {
$(nginx_temp_paths "$TMP/$1")
    $ACCESS_LOG_LINE
    keepalive_requests 1000000;
    keepalive_timeout 60s;
$5
    upstream bench {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$2 reuseport backlog=4096;
$3
        location /apps/bench/ {
$4
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
EOF
}

write_configs() {
    local body gh_log d
    body=$(head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x')
    for d in upstream nginx nginx_auth authsvc haproxy caddy gatehouse gatehouse_off; do
        mkdir -p "$TMP/$d/tmp"
    done
    if [[ $ACCESS_LOG == on ]]; then
        ACCESS_LOG_LINE="access_log $TMP/nginx/access.log;"
    else
        ACCESS_LOG_LINE="access_log off;"
    fi

    {
        nginx_common "$TMP/upstream"
        echo "worker_processes $UPSTREAM_WORKERS;"
        cat <<EOF
http {
$(nginx_temp_paths "$TMP/upstream")
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT reuseport backlog=4096;
        location / {
            default_type text/plain;
            return 200 "$body";
        }
    }
}
EOF
    } >"$TMP/upstream/nginx.conf"

    proxy_nginx_conf nginx "$NGINX_PORT" "" "" "" >"$TMP/nginx/nginx.conf"

    # The auth service: one nginx worker that says yes (204), as cheap as such a service gets.
    {
        nginx_common "$TMP/authsvc"
        echo "worker_processes 1;"
        cat <<EOF
http {
$(nginx_temp_paths "$TMP/authsvc")
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$AUTHSVC_PORT reuseport backlog=4096;
        location / { return 204; }
    }
}
EOF
    } >"$TMP/authsvc/nginx.conf"
    proxy_nginx_conf nginx_auth "$NGINX_AUTH_PORT" "
        location = /_auth {
            internal;
            proxy_pass http://authsvc;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Original-URI \$request_uri;
        }" "            auth_request /_auth;" "
    upstream authsvc {
        server 127.0.0.1:$AUTHSVC_PORT;
        keepalive 256;
    }" >"$TMP/nginx_auth/nginx.conf"

    cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    maxconn 8192
    nbthread $THREADS
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be
backend be
    http-reuse always
    option forwardfor
    server up 127.0.0.1:$UPSTREAM_PORT
EOF

    cat >"$TMP/caddy/Caddyfile" <<EOF
{
    admin off
    auto_https off
}
http://127.0.0.1:$CADDY_PORT {
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:$UPSTREAM_PORT
}
EOF

    local dir port usage
    for dir in gatehouse gatehouse_off; do
        if [[ $dir == gatehouse ]]; then port=$GATEHOUSE_PORT usage=true; else port=$GATEHOUSE_OFF_PORT usage=false; fi
        cat >"$TMP/$dir/gatehouse.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
threads = $THREADS
shutdown_grace_period = "1s"

[usage]
enabled = $usage
flush_seconds = 5

[[apps]]
slug = "bench"
upstreams = ["127.0.0.1:$UPSTREAM_PORT"]
access = "public"
EOF
    done
    cat >>"$TMP/gatehouse/gatehouse.toml" <<EOF

[[apps]]
slug = "signed"
upstreams = ["127.0.0.1:$UPSTREAM_PORT"]
access = "authenticated"

[[apps]]
slug = "groups"
upstreams = ["127.0.0.1:$UPSTREAM_PORT"]
access = "restricted"
allow_groups = ["g1000"]
headers = { groups_sent = "referenced" }
EOF
    if [[ $ACCESS_LOG == on ]]; then gh_log=info; else gh_log=warn; fi
    GATEHOUSE_LOG_LEVEL=$gh_log
}

# Runs a server in the background (pinned to CPU 1 with PIN=1); its PID goes to <NAME>_PID.
launch() { # name log command...
    local name=$1 log=$2
    shift 2
    if [[ $PIN == 1 ]]; then
        taskset -c 1 "$@" >"$log" 2>&1 &
    else
        "$@" >"$log" 2>&1 &
    fi
    printf -v "${name^^}_PID" '%s' "$!"
    PIDS+=("$!")
}

start_servers() {
    launch upstream "$TMP/upstream.log" "$NGINX" -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf"
    launch nginx "$TMP/nginx.log" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
    launch authsvc "$TMP/authsvc.log" "$NGINX" -p "$TMP/authsvc" -c "$TMP/authsvc/nginx.conf"
    launch nginx_auth "$TMP/nginx_auth.log" "$NGINX" -p "$TMP/nginx_auth" -c "$TMP/nginx_auth/nginx.conf"
    launch haproxy "$TMP/haproxy.log" haproxy -db -f "$TMP/haproxy/haproxy.cfg"
    launch caddy "$TMP/caddy.log" env HOME="$TMP/caddy" XDG_DATA_HOME="$TMP/caddy" XDG_CONFIG_HOME="$TMP/caddy" \
        caddy run --adapter caddyfile --config "$TMP/caddy/Caddyfile"
    launch pingora_min "$TMP/pingora_min.log" "$PINGORA_MIN_BIN" "127.0.0.1:$PINGORA_MIN_PORT" \
        "127.0.0.1:$UPSTREAM_PORT" "$THREADS"

    # Users of the signed-in rows, made before the gateway starts (same store).
    local groups=() g
    for g in $(seq 2000); do groups+=(--group "g$g"); done
    printf '%s\n' "$PASSWORD" | "$GATEHOUSE_BIN" user add reader --config "$TMP/gatehouse/gatehouse.toml" \
        >"$TMP/user-add.log" 2>&1 || die "user add reader failed: $(cat "$TMP/user-add.log")"
    printf '%s\n' "$PASSWORD" | "$GATEHOUSE_BIN" user add heavy "${groups[@]}" \
        --config "$TMP/gatehouse/gatehouse.toml" >>"$TMP/user-add.log" 2>&1 ||
        die "user add heavy failed: $(cat "$TMP/user-add.log")"
    launch gatehouse "$TMP/gatehouse.log" env GATEHOUSE_LOG="$GATEHOUSE_LOG_LEVEL" \
        "$GATEHOUSE_BIN" serve --config "$TMP/gatehouse/gatehouse.toml"
    launch gatehouse_off "$TMP/gatehouse_off.log" env GATEHOUSE_LOG="$GATEHOUSE_LOG_LEVEL" \
        "$GATEHOUSE_BIN" serve --config "$TMP/gatehouse_off/gatehouse.toml"
    # The signed-in rows are the same process as the public one.
    GATEHOUSE_SIGNED_PID=$GATEHOUSE_PID GATEHOUSE_SIGNED_PORT=$GATEHOUSE_PORT
    GATEHOUSE_GROUPS_PID=$GATEHOUSE_PID GATEHOUSE_GROUPS_PORT=$GATEHOUSE_PORT

    local name port pid
    wait_http "http://127.0.0.1:$AUTHSVC_PORT/" authsvc 204 "$AUTHSVC_PID"
    for name in upstream nginx nginx_auth haproxy caddy pingora_min gatehouse gatehouse_off; do
        port=${name^^}_PORT pid=${name^^}_PID
        wait_http "http://127.0.0.1:${!port}$REQUEST_PATH" "$name" 200 "${!pid}"
    done
    GATEHOUSE_SIGNED_HEADER="Cookie: $(sign_in "$GATEHOUSE_PORT" reader "$PASSWORD")"
    GATEHOUSE_GROUPS_HEADER="Cookie: $(sign_in "$GATEHOUSE_PORT" heavy "$PASSWORD")"
    [[ $GATEHOUSE_SIGNED_HEADER == *=* && $GATEHOUSE_GROUPS_HEADER == *=* ]] ||
        die "sign-in for the signed-in rows failed (see $TMP/gatehouse.log)"
    # Every target must return the upstream's body, not an error page of its own.
    local want got hdr
    want=$(curl -s "http://127.0.0.1:$UPSTREAM_PORT$REQUEST_PATH" | md5sum)
    for name in "${ALL_TARGETS[@]}"; do
        port=${name^^}_PORT
        hdr=${name^^}_HEADER
        got=$(curl -s -H "${!hdr:-X-None: 1}" "http://127.0.0.1:${!port}$(path_of "$name")" | md5sum)
        [[ $got == "$want" ]] || die "$name does not return the upstream's body (see $TMP/*.log)"
    done
}

# ---- measuring -----------------------------------------------------------------------------

# wrk latency value ("850.00us", "1.23ms", "1.01s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# CPU ticks of every server this script started.
all_server_ticks() {
    local total=0 pid
    for pid in "${PIDS[@]}"; do
        total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

# run_wrk NAME ROUND: appends
# "name round rps p50 p99 requests errors cpu_us other_pct helper_cpu_us" to RESULTS, where
# other_pct is the share of all CPUs used by processes other than wrk and our servers during
# the run, and helper_cpu_us the auth service's CPU per request (nginx_auth only).
run_wrk() {
    local name=$1 round=$2
    local port=${name^^}_PORT pid_var=${name^^}_PID hdr=${name^^}_HEADER
    local pid=${!pid_var}
    local url out before after rps p50 p99 reqs errs non2xx cpu s0 s1 all0 all1 wrk_cpu other h0 h1 helper
    url="http://127.0.0.1:${!port}$(path_of "$name")"
    out="$TMP/wrk-$name-$round.txt"
    read -r -a s0 <<<"$(stat_ticks)"
    all0=$(all_server_ticks)
    before=$(cpu_ticks "$pid")
    h0=$(cpu_ticks "$AUTHSVC_PID")
    local TIMEFORMAT='%U %S' pin=()
    [[ $PIN == 1 ]] && pin=(taskset -c 0)
    { time "${pin[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$VISIT_HEADER" \
        -H "${!hdr:-X-None: 1}" "$url" >"$out" 2>&1; } 2>"$out.cpu"
    after=$(cpu_ticks "$pid")
    h1=$(cpu_ticks "$AUTHSVC_PID")
    all1=$(all_server_ticks)
    read -r -a s1 <<<"$(stat_ticks)"
    wrk_cpu=$(awk '{ print $1 + $2 }' "$out.cpu")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    reqs=$(awk '/requests in/ {print $1}' "$out")
    errs=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
    errs=$((${errs:-0} + ${non2xx:-0}))
    [[ -n $rps && -n $reqs && $reqs -gt 0 ]] || die "could not read wrk output $out"
    cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    helper=0
    if [[ $name == nginx_auth ]]; then
        helper=$(awk -v t=$((h1 - h0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    fi
    other=$(awk -v busy=$((s1[0] - s0[0])) -v total=$((s1[1] - s0[1])) -v ours=$((all1 - all0)) \
        -v w="$wrk_cpu" -v hz="$CLK_TCK" 'BEGIN {
            o = busy - ours - w * hz; if (o < 0) o = 0
            printf "%.0f", total ? 100 * o / total : 0 }')
    printf '%s %s %s %s %s %s %s %s %s %s\n' "$name" "$round" "$rps" "$p50" "$p99" "$reqs" "$errs" \
        "$cpu" "$other" "$helper" >>"$RESULTS"
    log "round $round $name: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, ${cpu} us CPU/req," \
        "$errs errors; other processes used ${other} % of the CPUs"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$RESULTS" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# per_round_ratio COLUMN [A B]: "r1, r2, ..." of A/B (default gatehouse/nginx) within each round.
per_round_ratio() {
    awk -v c="$1" -v a="${2:-gatehouse}" -v b="${3:-nginx}" '$1 == b { n[$2] = $c } $1 == a { g[$2] = $c }
        END { for (r = 1; r in n; r++) printf "%s%.3f", (r > 1 ? ", " : ""), (n[r] > 0 ? g[r] / n[r] : 0) }' \
        "$RESULTS"
}

# pct A B: how much A differs from B, in percent with a sign.
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%+.1f %%", 100 * (a - b) / b; else print "n/a" }'; }

label_of() {
    case $1 in
    upstream) echo "upstream direct (reference)" ;;
    nginx) echo "nginx proxy (keep-alive)" ;;
    haproxy) echo "haproxy" ;;
    caddy) echo "Caddy reverse_proxy" ;;
    nginx_auth) echo "nginx auth_request → auth service" ;;
    pingora_min) echo "pingora, minimal ProxyHttp (the floor)" ;;
    gatehouse) echo "**Gatehouse, public app**" ;;
    gatehouse_signed) echo "**Gatehouse, signed-in (cookie, identity headers + JWT)**" ;;
    gatehouse_groups) echo "**Gatehouse, restricted app, user in 2,000 groups**" ;;
    gatehouse_off) echo "Gatehouse, public app, usage recording off" ;;
    esac
}

has_target() { [[ " ${RUN_TARGETS[*]} " == *" $1 "* ]]; }

report() {
    local name rps p50 p99 cpu errs other helper rss nrps ncpu
    echo "## Load: Gatehouse vs nginx, haproxy, Caddy, auth_request and pingora (same run)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc before $NPROC_BEFORE, after $NPROC_AFTER; $(uname -sr)"
    echo "- load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER"
    echo "- CPU busy with the servers idle (2 s sample of /proc/stat, all cores): before" \
        "$BUSY_BEFORE %, after $BUSY_AFTER %"
    echo "- gatehouse: $GATEHOUSE_VERSION"
    echo "- wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency -H '$VISIT_HEADER', $ROUNDS interleaved rounds" \
        "(order rotated), $WARMUP warm-up each; $BODY_BYTES-byte body (every request a visit)"
    echo "- proxies: $THREADS threads / worker processes each, upstream keep-alive on; upstream: nginx," \
        "$UPSTREAM_WORKERS worker(s); access logs $ACCESS_LOG; CPUs pinned:" \
        "$(if [[ $PIN == 1 ]]; then echo 'yes (wrk on 0, servers on 1)'; else echo no; fi)"
    echo "- $($NGINX -v 2>&1); $(haproxy -v 2>/dev/null | head -1 | awk '{print $1, $3}');" \
        "Caddy $(caddy version 2>/dev/null | awk '{print $1}'); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
    if [[ $SMOKE == 1 ]]; then echo "- **SMOKE run: it checks that the harness works; the numbers mean nothing**"; fi
    echo
    echo "Medians over the rounds. CPU = user+system time of the server under test / requests"
    echo "(nginx auth_request: the proxy's + the auth service's); RSS = peak resident memory of its"
    echo "processes over the whole run (the three Gatehouse rows are one process); other = share of"
    echo "all CPUs that processes other than wrk and the servers used meanwhile."
    echo
    echo "| target | requests/s | vs nginx | p50 ms | p99 ms | CPU µs/request | CPU vs nginx | RSS MiB | errors | other CPU % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    nrps=$(col nginx 3)
    ncpu=$(col nginx 8)
    for name in "${RUN_TARGETS[@]}"; do
        rps=$(col "$name" 3)
        p50=$(col "$name" 4)
        p99=$(col "$name" 5)
        cpu=$(col "$name" 8)
        other=$(col "$name" 9)
        helper=$(col "$name" 10)
        errs=$(awk -v n="$name" '$1 == n { s += $7 } END { print s + 0 }' "$RESULTS")
        rss=${RSS[$name]:-?}
        if [[ $name == nginx_auth ]]; then cpu="$cpu + $helper"; fi
        printf '| %s | %.0f | %s× | %.2f | %.2f | %s | %s× | %s | %s | %.0f |\n' "$(label_of "$name")" "$rps" \
            "$(ratio "$rps" "$nrps")" "$p50" "$p99" "$cpu" "$(ratio "$(col "$name" 8)" "$ncpu")" "$rss" "$errs" "$other"
    done
    echo
    echo "Within each round, CPU/request: Gatehouse public/nginx $(per_round_ratio 8);" \
        "signed-in/nginx $(per_round_ratio 8 gatehouse_signed nginx);" \
        "public/pingora-min $(per_round_ratio 8 gatehouse pingora_min); requests/s public/nginx $(per_round_ratio 3)."
    echo
    if has_target gatehouse && has_target gatehouse_off; then
        echo "**Usage recording on vs off** (medians): requests/s $(pct "$(col gatehouse 3)" "$(col gatehouse_off 3)")," \
            "CPU/request $(pct "$(col gatehouse 8)" "$(col gatehouse_off 8)"), p99 $(pct "$(col gatehouse 5)" "$(col gatehouse_off 5)")." \
            "On/off within each round: requests/s $(per_round_ratio 3 gatehouse gatehouse_off);" \
            "CPU/request $(per_round_ratio 8 gatehouse gatehouse_off)."
        echo
    fi
    echo "Every round:"
    echo
    echo "| round | target | requests/s | p50 ms | p99 ms | CPU µs/request | other CPU % |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    sort -k2,2n -s "$RESULTS" |
        awk '{ printf "| %s | %s | %.0f | %.2f | %.2f | %s | %s |\n", $2, $1, $3, $4, $5, $8, $9 }'
}

main() {
    ensure_tools
    TMP=$(mktemp -d /tmp/gatehouse-load.XXXXXX)
    chmod 755 "$TMP" # nginx workers run as nobody
    build_gatehouse
    CLK_TCK=$(getconf CLK_TCK)
    RESULTS=$TMP/results.txt
    : >"$RESULTS"
    local name
    for name in upstream nginx nginx_auth authsvc haproxy caddy pingora_min gatehouse gatehouse_off; do
        free_port "${name^^}_PORT"
    done
    # shellcheck disable=SC2206
    RUN_TARGETS=(${TARGETS:-${ALL_TARGETS[@]}})
    for name in "${RUN_TARGETS[@]}"; do
        [[ " ${ALL_TARGETS[*]} " == *" $name "* ]] || die "unknown target $name (known: ${ALL_TARGETS[*]})"
    done
    has_target nginx || RUN_TARGETS=(nginx "${RUN_TARGETS[@]}")
    write_configs
    NPROC_BEFORE=$(nproc)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    log "nproc $NPROC_BEFORE, load $LOAD_BEFORE; temp dir $TMP"
    start_servers
    GATEHOUSE_VERSION="$("$GATEHOUSE_BIN" --version 2>&1 | head -1), built from $BUILT_FROM"
    BUSY_BEFORE=$(cpu_busy)

    local n=${#RUN_TARGETS[@]} i round port hdr pid_var
    log "warming up"
    for name in "${RUN_TARGETS[@]}"; do
        port=${name^^}_PORT
        hdr=${name^^}_HEADER
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "$VISIT_HEADER" -H "${!hdr:-X-None: 1}" \
            "http://127.0.0.1:${!port}$(path_of "$name")" >/dev/null 2>&1
    done
    for round in $(seq "$ROUNDS"); do
        wait_quiet
        for i in $(seq 0 $((n - 1))); do
            run_wrk "${RUN_TARGETS[$(((i + round - 1) % n))]}" "$round"
        done
    done
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    BUSY_AFTER=$(cpu_busy)
    NPROC_AFTER=$(nproc)
    declare -gA RSS
    for name in "${RUN_TARGETS[@]}"; do
        pid_var=${name^^}_PID
        RSS[$name]=$(rss_peak_mib "${!pid_var}")
    done

    report >"$TMP/report.md"
    cat "$TMP/report.md"
    if [[ -n $OUT ]]; then
        cp "$TMP/report.md" "$OUT"
    fi
}

main "$@"
