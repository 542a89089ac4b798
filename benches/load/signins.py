#!/usr/bin/env python3
"""Signs one local user in through Gatehouse's login form, again and again, as browsers do:
GET the form (its CSRF cookie and field), POST the password, expect a redirect that sets the
session cookie. Prints one line: "<sign-ins> <failures> <seconds> <sign-ins per second>".

    signins.py PORT USER PASSWORD SECONDS [RATE] [WORKERS]

RATE: sign-ins per second to aim at (0: as fast as WORKERS threads go). Loopback only.
"""
import http.client
import re
import sys
import threading
import time
import urllib.parse

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def cookies_of(response):
    """name=value of every Set-Cookie in a response."""
    return [h.split(";", 1)[0] for k, h in response.getheaders() if k.lower() == "set-cookie"]


def sign_in(port, user, password):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/.gatehouse/login")
        r = conn.getresponse()
        page = r.read().decode("utf-8", "replace")
        m = CSRF.search(page)
        if r.status != 200 or not m:
            return False
        jar = "; ".join(cookies_of(r))
        body = urllib.parse.urlencode({"username": user, "password": password, "csrf": m.group(1), "rd": "/"})
        conn.request(
            "POST",
            "/.gatehouse/login",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": jar,
                "Origin": f"http://127.0.0.1:{port}",
            },
        )
        r = conn.getresponse()
        r.read()
        return r.status in (302, 303) and any(c.startswith("gatehouse_session=") for c in cookies_of(r))
    except OSError:
        return False
    finally:
        conn.close()


def main():
    port, user, password, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else 4
    ok, bad = [0], [0]
    lock = threading.Lock()
    start = time.monotonic()
    end = start + seconds
    slot = [0]  # next sign-in's number, for pacing at RATE

    def worker():
        while True:
            with lock:
                n = slot[0]
                slot[0] += 1
            if rate > 0:
                due = start + n / rate
                if due >= end:
                    return
                time.sleep(max(0.0, due - time.monotonic()))
            elif time.monotonic() >= end:
                return
            good = sign_in(port, user, password)
            with lock:
                if good:
                    ok[0] += 1
                else:
                    bad[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    print(f"{ok[0]} {bad[0]} {took:.2f} {ok[0] / took:.1f}")


if __name__ == "__main__":
    main()
