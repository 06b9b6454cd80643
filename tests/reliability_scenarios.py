"""The reliability scenarios: each runs real servers under load and a fault, returns its figures.

The tests (``tests/test_reliability.py``) assert on the figures; the README
report (``python -m tests.reliability_report``) prints them. Nothing here
asserts on a wall-clock time: times are only measured and reported.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any, Protocol

import psycopg2

from .reliability import (
    DEADLINE,
    LoadReport,
    app,
    cpus,
    db_trace_ids,
    load,
    mb,
    median_ms,
    pin,
    rss,
    wait_for,
)
from .servers import OwnedPostgres, RedisServer
from .test_serve import count_api_rows, serving, stop

# Environment for `mnemo-obs serve`: no Redis, no token, whatever the caller's shell has.
SERVE_ENV = {"MNEMO_OBS_REDIS_URL": "", "MNEMO_OBS_TOKEN": ""}
PATH = "/items/7"


def _books(report: LoadReport, dsn: str, *, written: int, dropped: int, recorded: int):
    """Reconcile the client's answers, the writer's counters and the table, by trace id."""
    answered = report.trace_ids()
    rows = db_trace_ids(dsn)
    stored = set(rows)
    return {
        "requests": len(report.results),
        "failed": report.failed,
        "unique_trace_ids": len(set(answered)),
        "recorded": recorded,
        "written": written,
        "dropped": dropped,
        "rows": len(rows),
        "duplicate_rows": len(rows) - len(stored),
        # Answered, not in the table, and not counted as dropped: lost silently.
        "lost": len(set(answered) - stored) - dropped,
        "unknown_rows": len(stored - set(answered)),
    }


def _cpu_args(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["--cpu", str(cpu)]


def load_nothing_lost(dsn: str, *, requests: int = 20_000, concurrency: int = 8) -> dict[str, Any]:
    """``requests`` GETs through ``mnemo-obs serve``, then SIGTERM: one row per answer.

    The queue holds the whole run, so no row may be dropped however the
    machine schedules the writer: a burst at full speed (about 9,000
    requests/s here) outruns the default 10,000-row queue in about a second
    of writer stall, which a shared machine can cause; drops under a stall
    are what the fault scenarios check.
    """
    server_cpu, client_cpu = cpus()
    queue = ("--max-queue", str(requests))
    with serving("--dsn", dsn, "--threads", "4", *queue, env=SERVE_ENV) as (proc, base):
        pin(proc.pid, server_cpu)
        rss_before = rss(proc.pid)
        with load(
            base + PATH,
            requests=requests,
            concurrency=concurrency,
            cpu=client_cpu,
            deadline=3 * DEADLINE,
        ) as client:
            report = client.finish()
        rss_after = rss(proc.pid)
        code, out, err = stop(proc, signal.SIGTERM)
    line = next((x for x in out.splitlines() if x.startswith("stopped: ")), "")
    written, dropped = (int(word) for word in line.replace(",", " ").split() if word.isdigit())
    figures = _books(report, dsn, written=written, dropped=dropped, recorded=written + dropped)
    figures.update(
        exit_status=code,
        stderr=err,
        statuses=dict(Counter(r[0] for r in report.results)),
        requests_per_s=round(len(report.results) / report.elapsed),
        median_ms=round(median_ms(report.latencies()), 2),
        rss_growth_mb=mb(rss_after - rss_before),
    )
    return figures


class Fault(Protocol):
    def begin(self) -> None: ...

    def end(self) -> None: ...


def _outage_load(
    dsn: str, max_queue: int, extra: list[str], fault: Fault, *, min_fault: float
) -> dict[str, Any]:
    """Load a reliability_app; ``fault.begin()``, hold it until drops show, ``fault.end()``.

    Returns the figures: latency medians before and during the fault, memory,
    the summary's writer section seen during it, how long after the end of the
    fault the writer wrote again, and the books.
    """
    server_cpu, client_cpu = cpus()
    args = ["--max-queue", str(max_queue), "--cache-ttl", "0", *extra, *_cpu_args(server_cpu)]
    with app(dsn, *args) as server:
        with load(server.base + PATH, cpu=client_cpu, deadline=3 * DEADLINE) as client:
            wait_for("rows written before the fault", lambda: server.summary()["writer"]["written"])
            time.sleep(1.0)  # a second of undisturbed requests, for the "before" median
            rss_before = rss(server.pid)
            t_fault = time.monotonic()
            fault.begin()
            ended = False
            t_down = time.monotonic()
            rss_max = rss_before
            polls = 0

            def dropped_and_held() -> dict[str, Any] | None:
                nonlocal rss_max, polls
                writer = server.summary()["writer"]  # asserts a 200
                polls += 1
                rss_max = max(rss_max, rss(server.pid))
                held = time.monotonic() - t_down >= min_fault
                return writer if held and writer["dropped_queue_full"] > 0 else None

            try:
                during = wait_for("drops in the summary's writer section", dropped_and_held)
                rss_end = rss(server.pid)
                t_ending = time.monotonic()
                fault.end()
                ended = True
            finally:
                if not ended:  # never leave the table locked or the server down
                    fault.end()
            t_up = time.monotonic()
            written = during["written"]
            wait_for(
                "the writer to write again", lambda: server.summary()["writer"]["written"] > written
            )
            recovery = time.monotonic() - t_up
            wait_for(
                "the queue to drain",
                lambda: server.summary()["writer"]["queue_depth"] < max_queue // 2,
            )
            time.sleep(1.0)  # some requests after the recovery too
            report = client.finish(stop=True)
        code, stats, err = server.stop()
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped_")) + stats["rejected"]
    recorded = stats["enqueued"] + stats["dropped_queue_full"] + stats["dropped_closed"]
    figures = _books(report, dsn, written=stats["written"], dropped=dropped, recorded=recorded)
    figures.update(
        exit_status=code,
        stderr=err,
        max_queue=max_queue,
        fault_s=round(t_ending - t_down, 1),
        median_before_ms=round(median_ms(report.latencies(0.0, t_fault)), 2),
        median_during_ms=round(median_ms(report.latencies(t_down, t_ending)), 2),
        median_after_ms=round(median_ms(report.latencies(t_up + recovery)), 2),
        requests_during=len(report.latencies(t_down, t_ending)),
        rss_growth_mb=mb(rss_end - rss_before),
        rss_max_growth_mb=mb(rss_max - rss_before),
        summary_during=during,
        summary_polls=polls,
        recovery_s=round(recovery, 2),
        final_stats=stats,
    )
    return figures


class _StopPostgres:
    def __init__(self, pg: OwnedPostgres) -> None:
        self.pg = pg

    def begin(self) -> None:
        self.pg.stop_server()

    def end(self) -> None:
        self.pg.start_server()


class _LockTable:
    """Another session holds ACCESS EXCLUSIVE on ``metrics``: every COPY waits."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    def begin(self) -> None:
        self.conn = psycopg2.connect(self.dsn, application_name="reliability-locker")
        with self.conn.cursor() as cur:  # not autocommit: the lock lasts until rollback
            cur.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")

    def end(self) -> None:
        self.conn.rollback()
        self.conn.close()


def database_outage(
    pg: OwnedPostgres, *, min_outage: float = 5.0, max_queue: int = 1000
) -> dict[str, Any]:
    """Stop the app's PostgreSQL under load for ``min_outage`` s (and until rows drop)."""
    return _outage_load(pg.dsn, max_queue, [], _StopPostgres(pg), min_fault=min_outage)


def slow_database(dsn: str, *, min_hold: float = 4.0, max_queue: int = 500) -> dict[str, Any]:
    """Lock the table under load for ``min_hold`` s (and until rows drop)."""
    return _outage_load(dsn, max_queue, [], _LockTable(dsn), min_fault=min_hold)


def redis_outage(dsn: str, redis: RedisServer) -> dict[str, Any]:
    """Stop and restart Redis; the summary (default 2 s cache) must stay 200 throughout."""
    with app(dsn, "--redis-url", redis.url) as server:
        statuses: list[bool] = []

        def connected(expected: bool) -> bool:
            statuses.append(server.summary()["redis"]["connected"])  # asserts a 200
            return statuses[-1] is expected

        wait_for("redis connected", lambda: connected(True))
        redis.stop_server()
        t_down = time.monotonic()
        wait_for("redis.connected false", lambda: connected(False))
        noticed_down = time.monotonic() - t_down
        redis.start_server()
        t_up = time.monotonic()
        wait_for("redis.connected true again", lambda: connected(True))
        noticed_up = time.monotonic() - t_up
        code, _stats, err = server.stop()
    return {
        "exit_status": code,
        "stderr": err,
        "summaries": len(statuses),
        "noticed_down_s": round(noticed_down, 2),
        "noticed_up_s": round(noticed_up, 2),
    }


def sigterm_under_load(dsn: str, *, min_rows: int = 2000) -> dict[str, Any]:
    """SIGTERM to ``mnemo-obs serve`` while the client is sending: every queued row is written."""
    server_cpu, client_cpu = cpus()
    with serving("--dsn", dsn, "--threads", "4", env=SERVE_ENV) as (proc, base):
        pin(proc.pid, server_cpu)
        with load(base + PATH, cpu=client_cpu) as client:
            wait_for("rows in the table", lambda: count_api_rows(dsn) >= min_rows)
            rows_at_signal = count_api_rows(dsn)
            code, out, err = stop(proc, signal.SIGTERM)
            report = client.finish(stop=True)
    line = next((x for x in out.splitlines() if x.startswith("stopped: ")), "")
    numbers = [int(word) for word in line.replace(",", " ").split() if word.isdigit()]
    rows = db_trace_ids(dsn)
    answered = {r[1] for r in report.results if r[0] == 200}
    return {
        "exit_status": code,
        "stderr": err,
        "stopped_line": line,
        "written": numbers[0] if numbers else None,
        "dropped": numbers[1] if len(numbers) > 1 else None,
        "rows": len(rows),
        "distinct_rows": len(set(rows)),
        "rows_at_signal": rows_at_signal,
        "answered": len(answered),
        "answered_without_row": len(answered - set(rows)),
        # Requests recorded whose response the closing server never sent.
        "rows_without_answer": len(set(rows) - answered),
        "connection_errors": sum(1 for r in report.results if r[0] == 0),
    }
