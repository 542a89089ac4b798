# Shared by run.sh, instructions.sh and scale.sh (sourced, not run): the temp folder and
# stopping what was started, ports, a small upstream, waiting for a server, and signing in
# through the login form. The sourcing script defines `die` (run.sh keeps its own temp
# folder and cleanup; the others call `make_tmp`).

# The allocator settings `gatehouse serve` starts itself again with (gateway/src/main.rs,
# ALLOCATOR_ENV), set here already: pingora-min runs with them too, and the gateway does not
# re-exec itself (valgrind, in instructions.sh, would not follow it into the new program).
export MIMALLOC_ALLOW_THP=${MIMALLOC_ALLOW_THP:-0}
export MIMALLOC_ARENA_MAX_OBJECT_SIZE=${MIMALLOC_ARENA_MAX_OBJECT_SIZE:-4096}

# Ports the script has handed out (they are only bound later, by the servers it starts).
USED_PORTS=" "

# Sets the variable named $1 to a free port on 127.0.0.1, never one handed out before in this
# script. Ports come from below the kernel's ephemeral range (ip_local_port_range): a port in
# that range can be taken, between this check and the server's bind, by the local end of any
# outgoing connection on the machine. A candidate must be bindable now. (A function that sets
# a variable, not one that prints: `$(free_port)` would run in a subshell and forget
# USED_PORTS, so two servers could be handed the same port.)
free_port() { # variable
    local low span p
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    span=$((low - 1024 < 12000 ? low - 1024 : 12000))
    ((span >= 1000)) || die "ip_local_port_range starts at $low: no room below it for test ports"
    for _ in $(seq 500); do
        p=$((low - span + RANDOM % span))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
            USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return
        fi
    done
    die "no free port found below $low"
}

# Prints the last lines of every log in TMP (to stderr), so that a failure in CI, where the
# temp folder is gone afterwards, shows why a server did not come up.
show_logs() {
    local f
    for f in "$TMP"/*.log "$TMP"/*/error.log "$TMP"/*/logs/error.log; do
        [[ -s $f ]] || continue
        printf -- '--- %s (last 15 lines)\n' "$f" >&2
        tail -n 15 "$f" >&2
    done
}

# Waits (up to two minutes: debug builds on a loaded machine start slowly) until `url` answers
# with HTTP status `status` (default 200; `any`: any HTTP answer at all). With a PID, gives up
# as soon as that process has exited. On failure prints the servers' logs and dies.
wait_http() { # url name [status] [pid]
    local url=$1 name=$2 want=${3:-200} pid=${4:-} got=""
    for _ in $(seq 600); do
        got=$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
        [[ $got == "$want" || ($want == any && $got =~ ^[1-5][0-9][0-9]$) ]] && return
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            show_logs
            die "$name exited before answering at $url"
        fi
        sleep 0.2
    done
    show_logs
    die "$name did not answer $want at $url (last answer: ${got:-none})"
}

# Signs `user` in on the Gatehouse at `port` through the login form (CSRF field and Origin as
# a browser sends them); prints "name=value" of the session cookie, or nothing.
sign_in() { # port user password
    local port=$1 user=$2 password=$3 jar=$TMP/jar-$2 csrf
    csrf=$(curl -s -c "$jar" "http://127.0.0.1:$port/.gatehouse/login" |
        sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
    [[ -n $csrf ]] || die "no CSRF field on the login page of 127.0.0.1:$port"
    curl -s -o /dev/null -b "$jar" -c "$jar" -H "Origin: http://127.0.0.1:$port" \
        --data-urlencode "username=$user" --data-urlencode "password=$password" \
        --data-urlencode "csrf=$csrf" --data-urlencode "rd=/" "http://127.0.0.1:$port/.gatehouse/login"
    awk '$6 == "gatehouse_session" { print $6 "=" $7 }' "$jar" | head -1
}

# Makes the temp folder TMP (prefix `name`), readable by nginx workers (another user), and a
# trap that stops every PID in PIDS (SIGINT: pingora's fast shutdown) and removes the folder
# (kept with KEEP_TMP=1).
make_tmp() { # name
    TMP=$(mktemp -d "/tmp/gatehouse-$1.XXXXXX")
    chmod 755 "$TMP"
    PIDS=()
    trap stop_all EXIT
}
stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}

# Starts an nginx at 127.0.0.1:`port` answering every path with the same 1 KiB from a file
# (files in $TMP/upstream) and waits until it answers. NGINX: the nginx binary.
start_upstream() { # port
    mkdir -p "$TMP/upstream/logs"
    head -c 1024 /dev/zero | tr '\0' 'x' >"$TMP/upstream/index.html"
    cat >"$TMP/upstream/nginx.conf" <<EOF
daemon off;
worker_processes 1;
error_log $TMP/upstream/error.log;
pid $TMP/upstream/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$1;
        location / { root $TMP/upstream; try_files /index.html =404; }
    }
}
EOF
    "$NGINX" -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf" >"$TMP/upstream.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$1/" upstream 200 "$!"
}
