#!/usr/bin/env bash
# Gatehouse vs nginx under wrk, in ONE run, on loopback only.
#
# Starts, each on a free 127.0.0.1 port:
#   upstream  nginx answering every path with a fixed small body from memory (no disk IO),
#             shared by both proxies, so it is the same for both and cheap;
#   nginx     a reverse proxy to the upstream (own -c config and -p prefix in a temp dir,
#             not the system service; worker_processes = THREADS, upstream keepalive on);
#   gatehouse `gatehouse serve` with threads = THREADS and one public app -> the upstream,
#             usage recording on ([usage] enabled = true, the default);
#   gatehouse_off  the same with usage recording off ([usage] enabled = false), own store.
# Then runs wrk against upstream, nginx and both Gatehouse instances, interleaved over ROUNDS
# rounds (the order rotates every round), and prints a markdown table: requests/s, latency
# p50/p99, CPU time per request of the server under test (from /proc/<pid>/stat), and the
# ratios Gatehouse/nginx and usage on/off. wrk sends `Sec-Fetch-Dest: document` to every
# target, so every request Gatehouse serves is a visit it counts (the worst case for the
# recorder; nginx and the upstream ignore the header). Absolute numbers depend on the
# machine; compare ratios of the same run.
#
# Settings (environment):
#   THREADS=2          proxy worker threads (Gatehouse) / worker processes (nginx)
#   UPSTREAM_WORKERS=1 worker processes of the upstream nginx
#   WRK_THREADS=2 CONNECTIONS=50 DURATION=10s ROUNDS=3 WARMUP=2s
#   BODY_BYTES=1024    size of the upstream's response body
#   ACCESS_LOG=off     on: nginx writes an access log, Gatehouse logs each request (info)
#   GATEHOUSE_REV=     build this commit (e.g. HEAD) from `git archive` instead of the work
#                      tree, so unfinished edits are neither measured nor break the build
#   GATEHOUSE_BIN=     use this binary instead of building one
#   CARGO_TARGET_DIR   default $HOME/.cache/gatehouse/target-bench (never the debug dir)
#   OUT=               also write the markdown report to this file
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw wrk output)
#   WAIT_QUIET=        e.g. 25: before each round wait until other processes use < 25 % of
#                      the CPUs (at most QUIET_MAX_WAIT=300 s); off by default
#
# Only the processes this script starts are stopped (by PID, on exit).
set -euo pipefail

THREADS=${THREADS:-2}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
WRK_THREADS=${WRK_THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
BODY_BYTES=${BODY_BYTES:-1024}
ACCESS_LOG=${ACCESS_LOG:-off}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
GATEHOUSE_REV=${GATEHOUSE_REV:-}
WAIT_QUIET=${WAIT_QUIET:-}
QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-300}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target-bench}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
REQUEST_PATH=/apps/bench/index.html
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
    (cd "$src" && nice -n 10 cargo build --release --locked -p gatehouse-gateway --bin gatehouse) >&2
    # A private copy: another build in the same target dir cannot replace it mid-run.
    cp "$CARGO_TARGET_DIR/release/gatehouse" "$TMP/gatehouse-bin"
    GATEHOUSE_BIN=$TMP/gatehouse-bin
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

USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        # A refused connect means nobody listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

wait_http() { # url name
    for _ in $(seq 150); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == 200 ]]; then
            return
        fi
        sleep 0.2
    done
    die "$2 did not answer 200 at $1 (see $TMP/*.log)"
}

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

write_configs() {
    local body access_log gh_log
    body=$(head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x')
    mkdir -p "$TMP/upstream/tmp" "$TMP/nginx/tmp" "$TMP/gatehouse" "$TMP/gatehouse_off"
    if [[ $ACCESS_LOG == on ]]; then
        access_log="access_log $TMP/nginx/access.log;"
    else
        access_log="access_log off;"
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

    {
        nginx_common "$TMP/nginx"
        echo "worker_processes $THREADS;"
        cat <<EOF
http {
$(nginx_temp_paths "$TMP/nginx")
    $access_log
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream bench {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096;
        location /apps/bench/ {
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
    } >"$TMP/nginx/nginx.conf"

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
    if [[ $ACCESS_LOG == on ]]; then gh_log=info; else gh_log=warn; fi
    GATEHOUSE_LOG_LEVEL=$gh_log
}

start_servers() {
    "$NGINX" -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf" >"$TMP/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    PIDS+=("$UPSTREAM_PID")
    "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    GATEHOUSE_LOG=$GATEHOUSE_LOG_LEVEL "$GATEHOUSE_BIN" serve --config "$TMP/gatehouse/gatehouse.toml" \
        >"$TMP/gatehouse.log" 2>&1 &
    GATEHOUSE_PID=$!
    PIDS+=("$GATEHOUSE_PID")
    GATEHOUSE_LOG=$GATEHOUSE_LOG_LEVEL "$GATEHOUSE_BIN" serve --config "$TMP/gatehouse_off/gatehouse.toml" \
        >"$TMP/gatehouse_off.log" 2>&1 &
    GATEHOUSE_OFF_PID=$!
    PIDS+=("$GATEHOUSE_OFF_PID")

    wait_http "http://127.0.0.1:$UPSTREAM_PORT$REQUEST_PATH" upstream
    wait_http "http://127.0.0.1:$NGINX_PORT$REQUEST_PATH" nginx
    wait_http "http://127.0.0.1:$GATEHOUSE_PORT$REQUEST_PATH" gatehouse
    wait_http "http://127.0.0.1:$GATEHOUSE_OFF_PORT$REQUEST_PATH" gatehouse_off
    # Both proxies must return the upstream's body, not an error page of their own.
    local want got name port
    want=$(curl -s "http://127.0.0.1:$UPSTREAM_PORT$REQUEST_PATH" | md5sum)
    for name in nginx:$NGINX_PORT gatehouse:$GATEHOUSE_PORT gatehouse_off:$GATEHOUSE_OFF_PORT; do
        port=${name#*:}
        got=$(curl -s "http://127.0.0.1:$port$REQUEST_PATH" | md5sum)
        [[ $got == "$want" ]] || die "${name%%:*} does not return the upstream's body"
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

# CPU ticks of every server this script started (upstream, nginx, Gatehouse).
all_server_ticks() {
    echo $(($(cpu_ticks "$UPSTREAM_PID") + $(cpu_ticks "$NGINX_PID") + $(cpu_ticks "$GATEHOUSE_PID") +
        $(cpu_ticks "$GATEHOUSE_OFF_PID")))
}

# run_wrk NAME PORT PID ROUND: appends
# "name round rps p50 p99 requests errors cpu_us other_pct" to RESULTS, where other_pct is
# the share of all CPUs used by processes other than wrk and our servers during the run.
run_wrk() {
    local name=$1 port=$2 pid=$3 round=$4
    local url out before after rps p50 p99 reqs errs non2xx cpu s0 s1 all0 all1 wrk_cpu other
    url="http://127.0.0.1:$port$REQUEST_PATH"
    out="$TMP/wrk-$name-$round.txt"
    read -r -a s0 <<<"$(stat_ticks)"
    all0=$(all_server_ticks)
    before=$(cpu_ticks "$pid")
    local TIMEFORMAT='%U %S'
    { time wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$VISIT_HEADER" "$url" >"$out" 2>&1; } \
        2>"$out.cpu"
    after=$(cpu_ticks "$pid")
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
    other=$(awk -v busy=$((s1[0] - s0[0])) -v total=$((s1[1] - s0[1])) -v ours=$((all1 - all0)) \
        -v w="$wrk_cpu" -v hz="$CLK_TCK" 'BEGIN {
            o = busy - ours - w * hz; if (o < 0) o = 0
            printf "%.0f", total ? 100 * o / total : 0 }')
    printf '%s %s %s %s %s %s %s %s %s\n' "$name" "$round" "$rps" "$p50" "$p99" "$reqs" "$errs" \
        "$cpu" "$other" >>"$RESULTS"
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

report() {
    local name label rps p50 p99 cpu errs other
    echo "## Load: Gatehouse vs nginx (same run)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc before $NPROC_BEFORE, after $NPROC_AFTER; $(uname -sr)"
    echo "- load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER"
    echo "- CPU busy with the servers idle (2 s sample of /proc/stat, all cores): before" \
        "$BUSY_BEFORE %, after $BUSY_AFTER %"
    echo "- gatehouse: $GATEHOUSE_VERSION"
    echo "- wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency -H '$VISIT_HEADER', $ROUNDS interleaved rounds" \
        "(order rotated), $WARMUP warm-up each; GET $REQUEST_PATH, $BODY_BYTES-byte body (every request a visit)"
    echo "- proxies: $THREADS threads (Gatehouse) / $THREADS worker processes (nginx)," \
        "upstream keepalive on; upstream: nginx, $UPSTREAM_WORKERS worker(s); access logs $ACCESS_LOG"
    echo "- $($NGINX -v 2>&1); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
    echo
    echo "Medians over the rounds. CPU = user+system time of the server under test / requests;"
    echo "other = share of all CPUs that processes other than wrk and the three servers used meanwhile."
    echo
    echo "| target | requests/s | p50 ms | p99 ms | CPU µs/request | errors | other CPU % |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for name in upstream nginx gatehouse gatehouse_off; do
        case $name in
        upstream) label="upstream direct (reference)" ;;
        nginx) label="nginx proxy" ;;
        gatehouse) label="Gatehouse proxy (usage on)" ;;
        gatehouse_off) label="Gatehouse proxy, usage off" ;;
        esac
        rps=$(col "$name" 3)
        p50=$(col "$name" 4)
        p99=$(col "$name" 5)
        cpu=$(col "$name" 8)
        other=$(col "$name" 9)
        errs=$(awk -v n="$name" '$1 == n { s += $7 } END { print s + 0 }' "$RESULTS")
        printf '| %s | %.0f | %.2f | %.2f | %.1f | %s | %.0f |\n' "$label" "$rps" "$p50" "$p99" "$cpu" \
            "$errs" "$other"
    done
    echo "| **Gatehouse / nginx** | **$(ratio "$(col gatehouse 3)" "$(col nginx 3)")×**" \
        "| $(ratio "$(col gatehouse 4)" "$(col nginx 4)")× | $(ratio "$(col gatehouse 5)" "$(col nginx 5)")×" \
        "| $(ratio "$(col gatehouse 8)" "$(col nginx 8)")× | | |"
    echo
    echo "Gatehouse/nginx within each round: requests/s $(per_round_ratio 3);" \
        "CPU/request $(per_round_ratio 8)."
    echo
    echo "**Usage recording on vs off** (medians): requests/s $(pct "$(col gatehouse 3)" "$(col gatehouse_off 3)")," \
        "CPU/request $(pct "$(col gatehouse 8)" "$(col gatehouse_off 8)"), p99 $(pct "$(col gatehouse 5)" "$(col gatehouse_off 5)")." \
        "On/off within each round: requests/s $(per_round_ratio 3 gatehouse gatehouse_off);" \
        "CPU/request $(per_round_ratio 8 gatehouse gatehouse_off)."
    echo
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
    UPSTREAM_PORT=$(free_port)
    NGINX_PORT=$(free_port)
    GATEHOUSE_PORT=$(free_port)
    GATEHOUSE_OFF_PORT=$(free_port)
    write_configs
    NPROC_BEFORE=$(nproc)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    log "nproc $NPROC_BEFORE, load $LOAD_BEFORE; ports upstream $UPSTREAM_PORT," \
        "nginx $NGINX_PORT, gatehouse $GATEHOUSE_PORT, gatehouse_off $GATEHOUSE_OFF_PORT; temp dir $TMP"
    start_servers
    GATEHOUSE_VERSION="$("$GATEHOUSE_BIN" --version 2>&1 | head -1), built from $BUILT_FROM"
    BUSY_BEFORE=$(cpu_busy)

    local targets=(upstream nginx gatehouse gatehouse_off) i round name port pid
    log "warming up"
    for name in "${targets[@]}"; do
        port=${name^^}_PORT
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "$VISIT_HEADER" \
            "http://127.0.0.1:${!port}$REQUEST_PATH" >/dev/null 2>&1
    done
    for round in $(seq "$ROUNDS"); do
        wait_quiet
        for i in 0 1 2 3; do
            name=${targets[$(((i + round - 1) % 4))]}
            port=${name^^}_PORT
            pid=${name^^}_PID
            run_wrk "$name" "${!port}" "${!pid}" "$round"
        done
    done
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    BUSY_AFTER=$(cpu_busy)
    NPROC_AFTER=$(nproc)

    report >"$TMP/report.md"
    cat "$TMP/report.md"
    if [[ -n $OUT ]]; then
        cp "$TMP/report.md" "$OUT"
    fi
}

main "$@"
