"""Several processes sampling one database: each sample once, a killed holder replaced, the fleet.

The other processes are ``python -m tests.sampler_child``, driven over stdin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import psycopg2
import pytest

from mnemo_obs import MetricsWriter
from mnemo_obs.installation import install
from mnemo_obs.sampler import Sampler
from mnemo_obs.sampler.leases import NAMESPACE

from .recording import fetch, wait_until
from .sampler_child import Child

SUMMARY = "/api/monitoring/advanced/summary"
# Each part and the row every one of its samples has.
HEARTBEATS = {
    "redis": "metric_type = 'redis' AND metric_name = 'up'",
    "postgres": "metric_type = 'postgres' AND metric_name = 'connections_total'",
    "system": "metric_type = 'system' AND metric_name = 'memory_percent'",
}


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Sampler child processes, killed at the end if a test left one running."""
    made: list[Child] = []
    yield made
    for child in made:
        child.close()


def test_two_processes_take_one_sample_of_each_part_per_interval(
    dsn: str, redis_url: str, children: list[Child]
) -> None:
    args = ("--dsn", dsn, "--redis-url", redis_url, "--interval", "0.2")
    children.extend([Child(*args), Child(*args)])  # started together: they race for the locks
    for child in children:
        child.wait_for("ten ticks", lambda stats: stats["ticks"] >= 10)
    finals = {child.pid: child.stop() for child in children}
    health = fetch(dsn, "metric_name = 'writer_enqueued'")
    stopped = {
        row["metadata"]["pid"]: row["timestamp"] for row in health if "final" in row["metadata"]
    }
    for part, where in HEARTBEATS.items():
        rows = fetch(dsn, where)
        takers = [row["metadata"]["pid"] for row in rows]
        first = takers[0]
        # One process took them all while both ran. The first one stopped
        # (cleanly: its locks freed) may have handed over to the other.
        handover = next((i for i, pid in enumerate(takers) if pid != first), len(takers))
        other = next(pid for pid in finals if pid != first)
        assert set(takers[handover:]) <= {other}
        assert handover >= 9, f"{part}: {takers}"
        if handover < len(takers):
            assert rows[handover]["timestamp"] > stopped[first]
        for pid, final in finals.items():
            assert takers.count(pid) == final["samples"][part]
            assert final["samples"][part] <= final["ticks"]  # at most one sample a tick
    # Writer health: every process its own, every tick and once more on stop.
    for pid, final in finals.items():
        mine = [row for row in health if row["metadata"]["pid"] == pid]
        assert len(mine) == final["ticks"] + 1
        assert mine[-1]["metadata"]["final"] is True


def test_a_killed_holder_is_replaced_within_two_intervals(
    dsn: str, redis_url: str, children: list[Child]
) -> None:
    leader = Child("--dsn", dsn, "--redis-url", redis_url, "--interval", "0.3")
    children.append(leader)
    leader.wait_for("the child to hold every lock", lambda s: len(s["held"]) == 3)
    writer = MetricsWriter(dsn, flush_interval=0.1)
    sampler = Sampler(writer, redis_url=redis_url, interval=0.3)
    try:
        sampler.start()
        wait_until("two ticks here, holding nothing", lambda: sampler.ticks >= 2)
        assert sampler.held == set()
        (backend,) = lock_holders(dsn)  # the child's session
        leader.kill()  # SIGKILL: no clean stop, no last sample
        # The server ends a killed process's session (and frees its locks) as
        # soon as its socket closes; count this sampler's ticks from there.
        wait_until("the killed session to end", lambda: not session_alive(dsn, backend))
        ticks = sampler.ticks
        wait_until(
            "this process to sample every part",
            lambda: all(sampler.samples[part] for part in HEARTBEATS),
        )
        assert sampler.held == {"redis", "postgres", "system"}
        sampler.stop(10)
        assert writer.flush(10)
    finally:
        sampler.stop(10)
        writer.close(10)
    me = os.getpid()
    mine = [
        row["timestamp"]
        for row in fetch(dsn, "metric_name = 'writer_enqueued'")
        if row["metadata"]["pid"] == me
    ]
    for part, where in HEARTBEATS.items():
        first = next(r["timestamp"] for r in fetch(dsn, where) if r["metadata"]["pid"] == me)
        # The tick of this first sample (each tick writes its writer health first).
        tick = sum(1 for stamp in mine if stamp <= first)
        assert tick <= ticks + 2, f"{part}: first sampled at tick {tick}, locks free at {ticks}"


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def lock_holders(dsn: str) -> set[int]:
    """The backends holding sampler locks."""
    rows = query(
        dsn,
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
        "AND granted",
        (NAMESPACE,),
    )
    return {row[0] for row in rows}


def session_alive(dsn: str, backend: int) -> bool:
    return bool(query(dsn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)))


def summary(app: falcon.App) -> dict[str, Any]:
    response = falcon.testing.TestClient(app).simulate_get(SUMMARY)
    assert response.status_code == 200, response.text
    return response.json  # type: ignore[no-any-return]


def test_the_fleet_adds_up_every_process_one_of_them_dropping_rows(
    dsn: str, children: list[Child]
) -> None:
    # A child whose queue of 50 rows gets 5,000 at once: most are dropped.
    dropper = Child("--dsn", dsn, "--interval", "3600", "--max-queue", "50", "--burst", "5000")
    children.append(dropper)
    dropped = dropper.ready["dropped"]
    assert dropped > 1000
    app = falcon.App()
    with install(
        app, dsn=dsn, redis_url="", cache_ttl=0, logs=False, sample_interval=3600
    ) as handle:
        assert handle.sampler is not None
        # One sample each, taken now (their interval is an hour: nothing else comes).
        theirs = dropper.sample()["last_writer_stats"]
        handle.sampler.sample_once()
        ours = handle.sampler.last_writer_stats
        assert ours is not None and handle.writer.flush(10)
        fleet = summary(app)["writer"]["fleet"]
        assert (fleet["processes_live"], fleet["processes_gone"]) == (2, 0)
        rows = {row["pid"]: row for row in fleet["processes"]}
        assert set(rows) == {os.getpid(), dropper.pid}
        for pid, stats in ((os.getpid(), ours), (dropper.pid, theirs)):
            for field in ("enqueued", "written", "dropped_queue_full", "dropped_after_retries"):
                assert rows[pid][field] == stats[field], (pid, field)
            assert rows[pid]["status"] == "live" and rows[pid]["healthy"] is True
        assert rows[dropper.pid]["dropped_queue_full"] == dropped
        for field in ("enqueued", "written", "dropped_queue_full", "dropped_closed", "rejected"):
            assert fleet["totals"][field] == ours[field] + theirs[field]
        assert fleet["totals"]["dropped_queue_full"] == dropped


def test_a_process_that_stops_reporting_is_shown_gone_and_one_that_stopped_as_stopped(
    dsn: str, children: list[Child]
) -> None:
    gone = Child("--dsn", dsn, "--interval", "0.2")
    stopped = Child("--dsn", dsn, "--interval", "0.2")
    children.extend([gone, stopped])
    app = falcon.App()
    with install(app, dsn=dsn, redis_url="", cache_ttl=0, logs=False, sample_interval=None):

        def statuses() -> dict[int, str]:
            return {p["pid"]: p["status"] for p in summary(app)["writer"]["fleet"]["processes"]}

        wait_until("both live", lambda: statuses() == {gone.pid: "live", stopped.pid: "live"})
        gone.kill()
        stopped.stop()
        wait_until("one gone", lambda: statuses() == {gone.pid: "gone", stopped.pid: "stopped"})
        fleet = summary(app)["writer"]["fleet"]
        assert (fleet["processes_live"], fleet["processes_stopped"], fleet["processes_gone"]) == (
            0,
            1,
            1,
        )
        assert fleet["totals"]["enqueued"] == 0  # only live processes count


def test_the_sampled_rows_go_like_any_other_with_a_purge(dsn: str, redis_url: str) -> None:
    from mnemo_obs.retention import purge

    writer = MetricsWriter(dsn)
    sampler = Sampler(writer, redis_url=redis_url, interval=3600)
    try:
        sampler.sample_once()
        assert writer.flush(10)
    finally:
        sampler.stop(10)
        writer.close(10)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE metrics SET timestamp = timestamp - interval '40 days'")
    finally:
        conn.close()
    assert purge(dsn, older_than_days=30) > 30
    assert fetch(dsn) == []
