"""A bounded HTTP load client, run as its own process: ``python -m tests.loadgen``.

Sends up to ``--requests`` GET requests over keep-alive connections from
``--concurrency`` threads, for at most ``--deadline`` seconds, and writes one
JSON document: ``started`` (its ``time.monotonic()`` at the start, a clock
every process on the machine shares, so a test can place its own events
among the requests), ``elapsed``, and per request ``[status, X-Trace-ID,
start offset s, latency s]``, status 0 for a connection error. SIGTERM or
SIGINT ends the run early, still writing the report. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# After a connection error, so a server that is gone is not hammered in a tight loop.
ERROR_PAUSE = 0.01


def run(
    url: str, requests: int, concurrency: int, deadline: float, stop: threading.Event
) -> dict[str, Any]:
    """Send the requests; return the report (see the module docstring)."""
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise SystemExit("loadgen: loopback addresses only")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tickets = itertools.count()
    results: list[tuple[int, str | None, float, float]] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop_at = started + deadline

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def worker() -> None:
        conn = connect()
        local = []
        try:
            while not stop.is_set() and next(tickets) < requests and time.monotonic() < stop_at:
                t0 = time.monotonic()
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    resp.read()
                    trace_id = resp.getheader("X-Trace-ID")
                    local.append((resp.status, trace_id, t0 - started, time.monotonic() - t0))
                except (OSError, http.client.HTTPException):
                    local.append((0, None, t0 - started, time.monotonic() - t0))
                    conn.close()
                    conn = connect()
                    stop.wait(ERROR_PAUSE)
        finally:
            conn.close()
            with lock:
                results.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "started": started,
        "elapsed": time.monotonic() - started,
        "results": sorted(results, key=lambda r: r[2]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen")
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds, at most")
    parser.add_argument("--cpu", type=int, help="pin the client to this CPU")
    parser.add_argument("--out", default="-")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    report = run(args.url, args.requests, args.concurrency, args.deadline, stop)
    if args.out == "-":
        json.dump(report, sys.stdout)
    else:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
