"""Through a real server: waitress serving the bare app vs the same app with mnemo_obs.

Each app runs in its own process (``benchmarks._serve``) pinned with
taskset to one core, with 4 waitress threads; wrk, pinned to the other
core, loads it over 127.0.0.1 for a fixed duration. The two servers are
started once and loaded in turn, A B B A ..., so drift in the machine's
load falls on both alike. PostgreSQL is not pinned: it shares the two
cores, so every row written costs the app CPU, as it would on a small host.

Afterwards the instrumented server flushes its writer: the rows in the
table must equal the requests it recorded, with none dropped.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg2

from ._common import Context, interleave, spread, table

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 8
TARGET = 0.75  # instrumented req/s at least this share of bare


class _Server:
    """A ``benchmarks._serve`` subprocess, pinned to ``core``."""

    def __init__(self, mode: str, dsn: str, core: int | None) -> None:
        command = [sys.executable, "-m", "benchmarks._serve", mode, "--dsn", dsn]
        if core is not None:
            command = ["taskset", "-c", str(core), *command]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        self.port = self._wait_for_port(timeout=30)

    def _wait_for_port(self, timeout: float) -> int:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        match = re.fullmatch(r"port (\d+)\n", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"benchmark server did not start (said {line!r})")
        return int(match.group(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/items/42"

    def stats(self) -> dict[str, object]:
        """Flush the writer and return its stats (``{}`` for the bare app)."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/_bench/stats", timeout=90
        ) as answer:
            return json.loads(answer.read())

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


class _Wrk:
    """wrk pinned to ``core``; each run's requests/s, and the responses it counted."""

    def __init__(self, wrk: str, core: int | None, seconds: int) -> None:
        self.command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
        if core is not None:
            self.command = ["taskset", "-c", str(core), *self.command]
        self.seconds = seconds
        self.responses: dict[str, int] = {}
        self.errors: list[str] = []
        self.p99: dict[str, list[float]] = {}

    def __call__(self, name: str, url: str) -> float:
        out = subprocess.run(
            [*self.command, url],
            capture_output=True,
            text=True,
            timeout=self.seconds + 60,
            check=True,
        ).stdout
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        total = re.search(r"(\d+) requests in", out)
        if rate is None or total is None:
            raise RuntimeError(f"cannot read wrk's output:\n{out}")
        self.responses[name] = self.responses.get(name, 0) + int(total.group(1))
        for problem in ("Socket errors", "Non-2xx or 3xx responses"):
            if problem in out:
                self.errors.append(f"{name}: {out[out.index(problem) :].splitlines()[0]}")
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
        if p99 is not None:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
            self.p99.setdefault(name, []).append(float(p99.group(1)) * scale)
        return float(rate.group(1))


def _cores() -> tuple[int | None, int | None]:
    """Two distinct cores for the server and wrk, or no pinning on a 1-core box."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return None, None
    return cores[0], cores[1]


def _count_rows(dsn: str, sql: str = "SELECT count(*) FROM metrics") -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def run(ctx: Context) -> str:
    wrk = shutil.which("wrk") or ("/usr/bin/wrk" if os.path.exists("/usr/bin/wrk") else None)
    if wrk is None:
        return "## Through a real server\n\nSkipped: wrk is not installed (`apt-get install wrk`)."
    seconds, repeats = (2, 2) if ctx.quick else (6, 5)
    server_core, wrk_core = _cores()
    conn = psycopg2.connect(ctx.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE metrics, metrics_rollups")
    conn.close()

    names = ("bare app", "with MetricsMiddleware + MetricsWriter")
    servers: dict[str, _Server] = {}
    load = _Wrk(wrk, wrk_core, seconds)
    try:
        servers[names[0]] = _Server("bare", ctx.dsn, server_core)
        servers[names[1]] = _Server("instrumented", ctx.dsn, server_core)
        warm = _Wrk(wrk, wrk_core, 1)
        for name, server in servers.items():  # warm-up: imports, routes, connections
            warm(name, server.url)
        results = interleave(
            {name: (lambda n=name: load(n, servers[n].url)) for name in names}, repeats
        )
        stats = servers[names[1]].stats()
        rows = _count_rows(ctx.dsn)
    finally:
        for server in servers.values():
            server.stop()

    recorded = int(stats["enqueued"])  # type: ignore[call-overload]
    dropped = sum(
        int(stats[key])  # type: ignore[call-overload]
        for key in ("dropped_queue_full", "dropped_after_retries", "dropped_closed", "rejected")
    )
    sent = load.responses[names[1]] + warm.responses[names[1]]
    if (
        not stats["flushed"]
        or rows != recorded
        or rows != stats["written"]
        or dropped
        or recorded < sent
    ):
        raise RuntimeError(
            f"rows lost under load: wrk counted {sent:,} responses, the table holds "
            f"{rows:,} rows; server stats {stats}"
        )
    bare, ours = results[names[0]], results[names[1]]
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    ratio = statistics.median(ours) / statistics.median(bare)
    body = [
        [
            name,
            spread(results[name], "{:,.0f}"),
            spread(load.p99.get(name, [0.0]), "{:.1f}"),
            "" if name == names[0] else f"{ratio:.2f} (paired {spread(ratios)})",
        ]
        for name in names
    ]
    pinning = (
        f"server on core {server_core}, wrk on core {wrk_core}"
        if server_core is not None
        else "not pinned (fewer than 2 cores or no taskset)"
    )
    verdict = "meets" if ratio >= TARGET else "misses"
    lines = [
        "## Through a real server (waitress + wrk)",
        f"Falcon app, one route, waitress with 4 threads in its own process; wrk -t1 "
        f"-c{CONNECTIONS} for {seconds:g} s a run on 127.0.0.1; {pinning}; PostgreSQL "
        f"unpinned. {repeats} interleaved runs each, median (min..max). waitress.queue "
        "logging at ERROR on both sides.",
        table(["server", "requests/s", "p99 latency ms", "÷ bare"], body),
        f"Instrumented ÷ bare: {ratio:.2f}, which {verdict} the target of "
        f"≥ {TARGET:.2f}. Nothing lost: wrk counted {sent:,} responses from the "
        f"instrumented server (warm-up included), the server recorded {recorded:,} "
        f"requests, and the table holds {rows:,} rows, 0 dropped "
        f"({stats['batches']:,} batches). The server may record a few more requests "
        f"than wrk counts: those in flight when a run's clock stopped.",
    ]
    if load.errors or warm.errors:
        lines.append("wrk reported: " + "; ".join(load.errors + warm.errors))
    return "\n\n".join(lines)
