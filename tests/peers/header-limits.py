#!/usr/bin/env python3
"""Measures how large request headers the app servers Gatehouse puts apps behind accept, as
installed here: nginx (Debian's, default `large_client_header_buffers 4 8k`), gunicorn and
uvicorn (from the data-app virtualenv, tests/peers/dataapps.sh), each started on a free
loopback port with default settings and tests/dataapps/echo_groups.py as the app.

For each it prints the longest single header line it answers 200 to (name + ": " + value)
and the largest header section (many 1,000-byte lines) it answers 200 to. The numbers are
recorded in docs/configuration.md ("How many groups an app is sent"); the budget of
`groups_sent = "auto"` is chosen from them.

Usage: tests/peers/header-limits.py [path/to/venv/bin/python]
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "..", "dataapps")
PY = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/gatehouse/venv-dataapps/bin/python")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(port, lines):
    """The status code the server answers a GET with these header lines, or 0 when it
    closes without answering."""
    head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(line + "\r\n" for line in lines) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(head.encode())
            data = s.recv(64)
        except OSError:
            return 0
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def largest(ok, lo, hi):
    """The largest n in [lo, hi] with ok(n), given ok(lo) and ok monotone."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def measure(port):
    name = "X-Test"
    line = largest(lambda n: status(port, [f"{name}: " + "a" * (n - len(name) - 2)]) == 200, 100, 1 << 20)
    per = 1000
    count = largest(
        lambda n: status(port, [f"X-T{i:04d}: " + "a" * (per - 9) for i in range(n)]) == 200, 1, 1000
    )
    return line, count * per


def wait(port, proc):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.args}")
        try:
            if status(port, []) == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server did not start: {proc.args}")


def nginx(tmp, port):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            f"""daemon off; master_process off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
}}
"""
        )
    return ["nginx", "-e", f"{tmp}/error.log", "-c", conf]


def gunicorn(tmp, port):
    return [PY, "-m", "gunicorn", "--chdir", APPS, "-b", f"127.0.0.1:{port}", "echo_groups:wsgi"]


def uvicorn(tmp, port):
    return [PY, "-m", "uvicorn", "--app-dir", APPS, "--host", "127.0.0.1", "--port", str(port), "echo_groups:asgi"]


def version(server):
    if server == "nginx":
        return subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    out = subprocess.run([PY, "-c", f"import {server}; print({server}.__version__)"], capture_output=True, text=True)
    return f"{server} {out.stdout.strip()}"


def main():
    for server, command in [("nginx", nginx), ("gunicorn", gunicorn), ("uvicorn", uvicorn)]:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            proc = subprocess.Popen(command(tmp, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait(port, proc)
                line, total = measure(port)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        print(f"{version(server):24} longest header line {line:>7} bytes; header section {total:>7} bytes")


if __name__ == "__main__":
    main()
