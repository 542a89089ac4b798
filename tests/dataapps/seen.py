"""What an app behind Gatehouse saw: each app appends one JSON line per request (or script
run, or session) to the file named by GATEHOUSE_SEEN_LOG, with its headers lower-cased, so
the Rust tests can check who reached the app and with which identity headers."""

import json
import os
import threading

_lock = threading.Lock()


def record(where, headers, **extra):
    path = os.environ.get("GATEHOUSE_SEEN_LOG")
    if not path:
        return
    line = {"where": where, "headers": {k.lower(): v for k, v in headers.items()}}
    line.update(extra)
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
