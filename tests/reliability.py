"""Processes and measurements for the reliability scenarios (tests and README report).

A server process (``mnemo-obs serve`` or :mod:`tests.reliability_app`) and
a load client process (:mod:`tests.loadgen`) run side by side on loopback;
the scenario moves a real server around them (stops PostgreSQL, locks the
table, stops Redis, sends SIGTERM) and places those events among the
requests by ``time.monotonic()``, which every process on the machine shares.
Every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg2

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = "/api/monitoring/advanced/summary"
DEADLINE = 60.0  # bound on any wait; only reached when something is broken
T = TypeVar("T")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU) when there are two to pin to, else (None, None).

    Unpinned, two processes on two shared cores measure the scheduler more
    than the code (see BENCHMARKING.md); pinned, the load test runs faster.
    """
    mine = sorted(os.sched_getaffinity(0))
    return (mine[0], mine[1]) if len(mine) >= 2 else (None, None)


def pin(pid: int, cpu: int | None) -> None:
    """Pin every thread of process ``pid`` to ``cpu`` (threads it starts later inherit it)."""
    if cpu is None:
        return
    for thread in psutil.Process(pid).threads():
        os.sched_setaffinity(thread.id, {cpu})


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Call ``probe`` every 0.1 s until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def get_json(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """GET ``url``; (status, JSON body or {})."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


def db_trace_ids(dsn: str) -> list[str]:
    """The trace id of every api row (duplicates kept)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT metadata->>'trace_id' FROM metrics WHERE metric_type = 'api'")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


# -- processes ----------------------------------------------------------------


class App:
    """A :mod:`tests.reliability_app` process; ``stop()`` sends SIGTERM and reads its STATS."""

    def __init__(self, dsn: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability_app", "--dsn", dsn, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        # Bounded: a child that hangs before listening must not hang the test.
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("READY "):
            self.kill()
            raise AssertionError(f"reliability_app did not start: {line!r} {self.proc.stderr}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"
        self.pid = self.proc.pid

    def summary(self, token: str | None = None) -> dict[str, Any]:
        status, body = get_json(self.base + SUMMARY, token)
        assert status == 200, (status, body)
        return body

    def stop(self) -> tuple[int, dict[str, Any], str]:
        """SIGTERM; (exit status, final writer stats, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("reliability_app did not exit after SIGTERM") from None
        lines = [line for line in out.splitlines() if line.startswith("STATS ")]
        assert lines, f"no STATS line: {out!r} {err!r}"
        return self.proc.returncode, json.loads(lines[-1][6:]), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=DEADLINE)


@contextmanager
def app(dsn: str, *args: str) -> Iterator[App]:
    process = App(dsn, *args)
    try:
        yield process
    finally:
        process.kill()


@dataclass
class Load:
    """A running :mod:`tests.loadgen` process."""

    proc: subprocess.Popen[bytes]
    out: str

    def finish(self, stop: bool = False) -> LoadReport:
        """Wait for the client (after SIGTERM if ``stop``) and read its report."""
        if stop:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=DEADLINE + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the load client did not finish in time") from None
        try:
            with open(self.out, encoding="utf-8") as file:
                return LoadReport(**json.load(file))
        finally:
            os.unlink(self.out)


@contextmanager
def load(
    url: str,
    *,
    requests: int = 1_000_000,
    concurrency: int = 8,
    deadline: float = DEADLINE,
    cpu: int | None = None,
) -> Iterator[Load]:
    """Run the load client against ``url`` while the block runs; killed if it is left running."""
    fd, out = tempfile.mkstemp(prefix="mnemo_obs-load-", suffix=".json")
    os.close(fd)
    args = ["--requests", str(requests), "--concurrency", str(concurrency)]
    args += ["--deadline", str(deadline), "--out", out]
    if cpu is not None:
        args += ["--cpu", str(cpu)]
    proc = subprocess.Popen([sys.executable, "-m", "tests.loadgen", url, *args], env=_env())
    running = Load(proc, out)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if os.path.exists(out):
            os.unlink(out)


@dataclass
class LoadReport:
    started: float
    elapsed: float
    results: list[list[Any]] = field(default_factory=list)

    @property
    def answered(self) -> list[list[Any]]:
        return [r for r in self.results if r[0] != 0]

    @property
    def failed(self) -> int:
        """Requests not answered 200 (connection errors included)."""
        return sum(1 for r in self.results if r[0] != 200)

    def trace_ids(self) -> list[str]:
        return [r[1] for r in self.answered]

    def latencies(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        """Latencies (s) of the requests sent between the monotonic times ``start`` and ``end``."""
        return [r[3] for r in self.results if start <= self.started + r[2] < end]


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def mb(size: float) -> float:
    return round(size / 1e6, 1)
