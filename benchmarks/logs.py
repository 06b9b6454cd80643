"""Live logs: what a log call costs with the handler, and the app's throughput with streams open.

1. In-process, pinned to one core: ``logger.info("...", arg)`` inside a
   request context (a trace id set), through a logger at INFO whose only
   handler is a NullHandler (the reference: the record is made and
   dispatched), the :class:`LogHandler` with its buffer, the handler with
   the Redis forwarder (when ``redis-server`` is on PATH: a throwaway one),
   and a StreamHandler writing to /dev/null (what a usual handler costs).
   The forwarder's own thread shares the GIL and the core: its time shows in
   the loop, and the queue is drained before the clock stops.
2. Through waitress (4 threads, pinned to one core; wrk and the stream
   readers on the other): one route that logs a line per request, served
   with no log handler, with the handler and no stream, and with 2 streams
   open that follow every record live. Runs interleaved, side by side.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mnemo_obs.logs import LiveLogs
from mnemo_obs.tracing import _current

from ._common import Context, interleave, spread, table
from .server import _cores, _Wrk

ROOT = Path(__file__).resolve().parent.parent
TARGET_US = 5.0  # a log call with the handler: at most this much more than without
TARGET_RATIO = 0.90  # with 2 streams open: at least this share of the throughput


def _redis_server() -> tuple[subprocess.Popen[bytes], str, str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    workdir = tempfile.mkdtemp(prefix="mnemo_obs-bench-redis-")
    sock = os.path.join(workdir, "redis.sock")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", sock, "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return None
        time.sleep(0.05)
    return proc, f"unix://{sock}", workdir


def _per_call(n: int, repeats: int) -> tuple[list[list[object]], float, str]:
    logger = logging.getLogger("bench.calls")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    devnull = open(os.devnull, "w")  # noqa: SIM115
    redis_server = _redis_server()
    local = LiveLogs(loggers=("bench.calls",), token="x")
    forwarding = (
        LiveLogs(loggers=("bench.calls",), token="x", redis_url=redis_server[1])
        if redis_server
        else None
    )
    handlers: dict[str, Callable[[], None] | None] = {}
    setups: dict[str, logging.Handler] = {
        "NullHandler (reference)": logging.NullHandler(),
        "LogHandler, local buffer": local.handler,
        "StreamHandler to /dev/null (for scale)": logging.StreamHandler(devnull),
    }
    if forwarding is not None:
        setups["LogHandler + Redis forwarder"] = forwarding.handler
        forwarder = forwarding.forwarder

        def drained() -> None:
            deadline = time.monotonic() + 30
            while forwarder.stats()["queued"] and time.monotonic() < deadline:  # type: ignore[union-attr]
                time.sleep(0.001)

        handlers["LogHandler + Redis forwarder"] = drained

    def runner(name: str, handler: logging.Handler) -> Callable[[], float]:
        def run() -> float:
            logger.handlers = [handler]
            info = logger.info
            token = _current.set("0e3a2b9c-7f6d-4e5a-9b8c-1d2e3f4a5b6c")
            try:
                start = time.perf_counter()
                for i in range(n):
                    info("item %d served", i)
                settle = handlers.get(name)
                if settle is not None:
                    settle()
                return (time.perf_counter() - start) / n * 1e6
            finally:
                _current.reset(token)
                logger.handlers = []

        return run

    try:
        variants = {name: runner(name, handler) for name, handler in setups.items()}
        for run in variants.values():  # warm-up
            run()
        results = interleave(variants, repeats)
    finally:
        local.close(5)
        if forwarding is not None:
            forwarding.close(10)
        devnull.close()
        if redis_server is not None:
            redis_server[0].terminate()
            redis_server[0].wait(10)
            shutil.rmtree(redis_server[2], ignore_errors=True)
    reference = statistics.median(results["NullHandler (reference)"])
    rows = [
        [name, spread(values), f"{statistics.median(values) - reference:+.2f}"]
        for name, values in results.items()
    ]
    ours = statistics.median(results["LogHandler, local buffer"]) - reference
    if forwarding is None:
        note = " (redis-server not found: no forwarder row)"
    else:
        stats = forwarding.forwarder.stats()  # type: ignore[union-attr]
        lost = stats["dropped_queue_full"] + stats["dropped_redis_error"]
        note = (
            f"; the forwarder row includes its thread's work (JSON, one EVALSHA a batch) "
            f"until its queue is empty: {stats['sent']:,} records sent to a throwaway "
            f"redis-server on a Unix socket, {lost} dropped"
        )
    return rows, ours, note


class _LogServer:
    """A ``benchmarks._serve_logs`` subprocess pinned to ``core``."""

    def __init__(self, core: int | None, *extra: str) -> None:
        command = [sys.executable, "-m", "benchmarks._serve_logs", *extra]
        if core is not None:
            command = ["taskset", "-c", str(core), *command]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        match = re.fullmatch(r"port (\d+)\n", self.process.stdout.readline() if ready else "")
        if match is None:
            self.stop()
            raise RuntimeError("the logs benchmark server did not start")
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}/items/42"

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_bench/stats", timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class _Reader(threading.Thread):
    """One stream, read to the end; counts the ``log`` events it received."""

    def __init__(self, port: int, query: str = "") -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request(
            "GET", f"/logs/stream?tail=0{query}", headers={"Authorization": "Bearer bench"}
        )
        self.sock = self.conn.sock  # getresponse() may hand it to the response
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise RuntimeError(f"stream refused: {self.resp.status} {self.resp.read()!r}")
        self.events = 0
        self.start()

    def run(self) -> None:
        # Big reads and a count, not a line at a time: the reader shares its
        # core with wrk and must not be what limits the load.
        pattern = b"\nevent: log\n"
        left = b""
        try:
            while chunk := self.resp.read1(65536):
                data = left + chunk
                self.events += data.count(pattern)
                left = data[-(len(pattern) - 1) :]
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by stop() (http.client drops its file on close)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # ends the blocked read
        self.join(10)
        self.resp.close()
        self.conn.close()


def _throughput(quick: bool) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "Skipped: wrk is not installed (`apt-get install wrk`)."
    seconds, repeats = (2, 2) if quick else (6, 5)
    server_core, client_core = _cores()
    affinity = os.sched_getaffinity(0)
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})  # the stream readers, beside wrk
    names = (
        "no log handler",
        "LogHandler, no stream open",
        "LogHandler, 2 streams open, following every record",
        "LogHandler, 2 streams open, filtered to nothing (level=CRITICAL)",
        "LogHandler, 2 streams open, following, waitress with 6 threads",
    )
    bare = ours = wider = None
    events: list[int] = []
    load = _Wrk(wrk, client_core, seconds)
    try:
        bare = _LogServer(server_core, "--no-handler")
        ours = _LogServer(server_core)
        wider = _LogServer(server_core, "--threads", "6")
        warm = _Wrk(wrk, client_core, 1)
        warm(names[0], bare.url)
        warm(names[1], ours.url)
        warm(names[4], wider.url)

        def with_streams(name: str, query: str = "", server: _LogServer = ours) -> float:
            readers = [_Reader(server.port, query), _Reader(server.port, query)]
            try:
                return load(name, server.url)
            finally:
                for reader in readers:
                    reader.stop()
                if not query:
                    events.append(min(r.events for r in readers))
                deadline = time.monotonic() + 30  # the server notices at its next heartbeat
                while server.stats()["streams_open"] and time.monotonic() < deadline:
                    time.sleep(0.1)

        results = interleave(
            {
                names[0]: lambda: load(names[0], bare.url),  # type: ignore[union-attr]
                names[1]: lambda: load(names[1], ours.url),  # type: ignore[union-attr]
                names[2]: lambda: with_streams(names[2]),
                names[3]: lambda: with_streams(names[3], "&level=CRITICAL"),
                names[4]: lambda: with_streams(names[4], "", wider),
            },
            repeats,
        )
    finally:
        os.sched_setaffinity(0, affinity)
        for each in (bare, ours, wider):
            if each is not None:
                each.stop()
    base = results[names[1]]
    paired = [s / b for s, b in zip(results[names[2]], base, strict=True)]
    ratio = statistics.median(results[names[2]]) / statistics.median(base)
    rows = [
        [
            name,
            spread(results[name], "{:,.0f}"),
            spread(load.p99.get(name, [0.0]), "{:.1f}"),
            f"{statistics.median(results[name]) / statistics.median(base):.2f}",
        ]
        for name in names
    ]
    pinning = (
        f"server on core {server_core}; wrk and the stream readers on core {client_core}"
        if server_core is not None
        else "not pinned"
    )
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    lines = [
        f"One route that logs an INFO line per request; waitress, 4 threads, in its own "
        f"process; wrk -t1 -c8 for {seconds} s a run; {pinning}. {repeats} interleaved runs "
        "each, median (min..max). The streams follow every record live (no filter).",
        table(["server", "requests/s", "p99 latency ms", "÷ handler, no stream"], rows),
        f"With 2 streams open ÷ without: {ratio:.2f} (paired {spread(paired)}), which "
        f"{verdict} the target of ≥ {TARGET_RATIO:.2f}. Each following stream received "
        f"{spread(events, '{:,.0f}')} log events a run (one per request served). "
        f"Streams that send nothing still hold 2 of the 4 server threads: "
        f"{statistics.median(results[names[3]]) / statistics.median(base):.2f}; with 2 threads "
        f"more for them: {statistics.median(results[names[4]]) / statistics.median(base):.2f}.",
    ]
    if load.errors or warm.errors:
        lines.append("wrk reported: " + "; ".join(load.errors + warm.errors))
    return "\n\n".join(lines)


def run(ctx: Context) -> str:
    # Under the forwarder's queue (10,000) a run: records it drops would cost nothing.
    n, repeats = (2_000, 3) if ctx.quick else (8_000, 21)
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    try:
        rows, ours, note = _per_call(n, repeats)
    finally:
        os.sched_setaffinity(0, affinity)
    verdict = "meets" if ours <= TARGET_US else "misses"
    return "\n\n".join(
        [
            "## Live logs",
            "### A log call",
            f"`logger.info('item %d served', i)` inside a request context, {n:,} calls a run, "
            f"pinned to one core; {repeats} interleaved runs, µs per call, median (min..max)"
            f"{note}.",
            table(["handler", "µs per call", "vs NullHandler"], rows),
            f"The handler adds {ours:.2f} µs a call, which {verdict} the target of at most "
            f"{TARGET_US:g} µs.",
            "### The app's throughput with streams open",
            _throughput(ctx.quick),
        ]
    )
