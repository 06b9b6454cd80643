"""The sampler in one process: its rows, its options, outages, stopping and fork."""

from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import falcon
import psycopg2
import pytest

from mnemo_obs import MetricsWriter, gauges
from mnemo_obs.errors import ConfigurationError
from mnemo_obs.installation import install
from mnemo_obs.sampler import Sampler
from mnemo_obs.sampler.leases import NAMESPACE

from .proxy import FreezableProxy
from .recording import FAST_RETRY, TIMEOUT, fetch, readme_example, wait_child, wait_until
from .servers import OwnedPostgres, RedisServer

INTERVAL = 0.2


@pytest.fixture
def make_sampler() -> Iterator[Any]:
    """``make_sampler(dsn, **options)``: a writer and its sampler, both closed at the end."""
    made: list[tuple[Sampler, MetricsWriter]] = []

    def make(dsn: str, *, writer_options: dict[str, Any] | None = None, **options: Any) -> Sampler:
        writer = MetricsWriter(dsn, flush_interval=0.1, **(writer_options or {}))
        sampler = Sampler(writer, **{"interval": INTERVAL, "redis_url": "", **options})
        made.append((sampler, writer))
        return sampler

    yield make
    for sampler, writer in made:
        sampler.stop(10)
        writer.close(10)


def held_locks(dsn: str) -> int:
    """Sampler locks held in the database, by any session."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
                "AND granted",
                (NAMESPACE,),
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_one_tick_writes_a_row_per_gauge_with_who_took_it(
    dsn: str, redis_url: str, make_sampler: Any
) -> None:
    sampler = make_sampler(dsn, redis_url=redis_url, interval=3600)
    assert sampler.sample_once() == {"writer", "redis", "postgres", "system"}
    assert sampler._writer.flush(10)
    rows = fetch(dsn)
    by_type: dict[str, set[str]] = {}
    for row in rows:
        by_type.setdefault(row["metric_type"], set()).add(row["metric_name"])
        meta = row["metadata"]
        assert (meta["host"], meta["pid"], meta["service"]) == (
            socket.gethostname(),
            os.getpid(),
            "",
        )
        assert meta["interval"] == 3600
        assert math.isfinite(row["value"])
    # hit_rate is left out while the fresh Redis has seen no lookup: no rate, not 0.
    assert by_type["redis"] == set(gauges.NAMES["redis"]) - {"hit_rate"}
    assert by_type["postgres"] == set(gauges.NAMES["postgres"])
    # cpu_percent is over the time since the last tick: none yet if no CPU time has passed.
    assert by_type["system"] - {"cpu_percent"} == set(gauges.NAMES["system"]) - {"cpu_percent"}
    scopes = {(r["metric_type"], r["metadata"]["scope"]) for r in rows}
    assert scopes == {
        ("redis", "cluster"),
        ("postgres", "cluster"),
        ("system", "host"),
        ("system", "process"),
    }
    sources = {r["metadata"]["scope"]: r["metadata"]["source"] for r in rows}
    assert sources["host"] == socket.gethostname()
    assert sources["process"] == f"{socket.gethostname()}:{os.getpid()}"
    counters = [
        r for r in rows if r["metric_name"] in gauges.COUNTERS and r["metric_type"] != "system"
    ]
    assert counters and all("epoch" in r["metadata"] for r in counters)
    writer = {r["metric_name"]: r for r in rows if r["metadata"]["scope"] == "process"}
    assert writer["writer_healthy"]["value"] == 1.0
    assert writer["writer_healthy"]["metadata"]["last_error"] is None


def test_the_thread_samples_every_interval_and_stop_ends_it_and_frees_the_locks(
    dsn: str, redis_url: str, make_sampler: Any
) -> None:
    sampler = make_sampler(dsn, redis_url=redis_url)
    sampler.start()
    sampler.start()  # a no-op while it runs
    wait_until("three ticks", lambda: sampler.ticks >= 3)
    assert sampler.held == {"redis", "postgres", "system"}
    assert [t.name for t in threading.enumerate()].count("mnemo_obs.sampler") == 1
    assert held_locks(dsn) == 3
    assert sampler.stop(10)
    assert "mnemo_obs.sampler" not in [t.name for t in threading.enumerate()]
    assert held_locks(dsn) == 0
    assert sampler.stop(10)  # idempotent
    with pytest.raises(RuntimeError):
        sampler.start()
    # The last writer-health sample says the process stopped cleanly.
    assert sampler._writer.flush(10)
    last = fetch(dsn, "metric_name = 'writer_enqueued'")[-1]
    assert last["metadata"].get("final") is True
    assert sampler.samples["writer"] == sampler.ticks


@pytest.mark.parametrize("bad", [0, 0.05, -1, 86401, float("nan"), float("inf"), "60", True, [60]])
def test_a_bad_interval_is_refused_naming_it(dsn: str, bad: object) -> None:
    with MetricsWriter(dsn) as writer:
        with pytest.raises(ConfigurationError, match="interval"):
            Sampler(writer, interval=bad)  # type: ignore[arg-type]
        app = falcon.App()
        with pytest.raises(ConfigurationError, match="sample_interval"):
            install(app, dsn=dsn, sample_interval=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="host"):
            Sampler(writer, host="")


def test_install_starts_a_sampler_and_close_stops_it(dsn: str, redis_url: str) -> None:
    with install(falcon.App(), dsn=dsn, redis_url=redis_url, logs=False) as handle:
        assert handle.sampler is not None and handle.sampler.interval == 60.0
        assert "mnemo_obs.sampler" in [t.name for t in threading.enumerate()]
    assert "mnemo_obs.sampler" not in [t.name for t in threading.enumerate()]
    # Never ticked: no rows, and the writer was never started for it.
    assert fetch(dsn) == []
    with install(falcon.App(), dsn=dsn, sample_interval=None, logs=False) as handle:
        assert handle.sampler is None
        assert "mnemo_obs.sampler" not in [t.name for t in threading.enumerate()]


def test_a_redis_outage_is_up_0_and_no_other_redis_row(
    dsn: str, owned_redis: RedisServer, make_sampler: Any
) -> None:
    sampler = make_sampler(dsn, redis_url=owned_redis.url)
    sampler.start()
    wait_until("redis samples", lambda: sampler.samples["redis"] >= 3)
    owned_redis.stop_server()
    down = sampler.samples["redis"]
    wait_until("redis samples while down", lambda: sampler.samples["redis"] >= down + 3)
    owned_redis.start_server()
    back = sampler.samples["redis"]
    wait_until("redis samples once back", lambda: sampler.samples["redis"] >= back + 3)
    sampler.stop(10)
    assert sampler._writer.flush(10)
    ups = fetch(dsn, "metric_type = 'redis' AND metric_name = 'up'")
    values = [row["value"] for row in ups]
    assert 0.0 in values and values[0] == 1.0 and values[-1] == 1.0
    first_down = next(r["timestamp"] for r in ups if r["value"] == 0)
    last_down = [r["timestamp"] for r in ups if r["value"] == 0][-1]
    memory = fetch(
        dsn,
        "metric_type = 'redis' AND metric_name = 'memory_used_mb' "
        "AND timestamp >= %s AND timestamp <= %s",
        (first_down, last_down),
    )
    assert memory == []  # a gap, not a made-up value
    # Other parts went on meanwhile.
    assert sampler.samples["postgres"] >= sampler.samples["redis"] - 1


def test_a_postgres_outage_is_a_gap_and_the_writer_health_of_it_arrives_later(
    owned_pg: OwnedPostgres, make_sampler: Any
) -> None:
    sampler = make_sampler(owned_pg.dsn, writer_options=FAST_RETRY)
    sampler.start()
    wait_until("postgres samples", lambda: sampler.samples["postgres"] >= 3)
    owned_pg.stop_server()
    ticks = sampler.ticks
    wait_until("ticks while down", lambda: sampler.ticks >= ticks + 5)
    assert sampler.held == set()
    during = sampler.samples["postgres"]
    owned_pg.start_server()
    wait_until("postgres samples once back", lambda: sampler.samples["postgres"] >= during + 3)
    sampler.stop(10)
    assert sampler._writer.flush(10)
    rows = fetch(owned_pg.dsn, "metric_name IN ('connections_total', 'writer_enqueued')")
    sampled = [r["timestamp"] for r in rows if r["metric_name"] == "connections_total"]
    health = [r["timestamp"] for r in rows if r["metric_name"] == "writer_enqueued"]
    # The longest pause between two PostgreSQL samples spans the outage...
    pause = max(itertools.pairwise(sampled), key=lambda pair: pair[1] - pair[0])
    # ...during which the writer-health rows, queued, were written once it was back.
    assert sum(1 for stamp in health if pause[0] < stamp < pause[1]) >= 4
    assert len(health) == sampler.ticks + 1  # each tick's, and the last one's


def test_a_forked_child_samples_as_itself_and_leaves_the_parent_its_locks(
    dsn: str, make_sampler: Any
) -> None:
    sampler = make_sampler(dsn)
    sampler.start()
    wait_until("the parent holds its locks", lambda: sampler.held == {"postgres", "system"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            # The child's sampler runs again, as the child: its writer health
            # goes in; the parent's locks are the parent's.
            for _ in range(1500):
                if sampler.samples["writer"] >= 3:
                    break
                threading.Event().wait(0.02)
            ok = sampler.samples["writer"] >= 3 and not sampler.held & {"postgres", "system"}
            code = 0 if ok and sampler._writer.flush(10) and sampler.stop(10) else 3
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    samples = sampler.samples["postgres"]
    wait_until("the parent goes on", lambda: sampler.samples["postgres"] >= samples + 2)
    assert sampler.held == {"postgres", "system"}
    assert sampler._writer.flush(10)
    pids = {r["metadata"]["pid"] for r in fetch(dsn, "metric_name = 'writer_enqueued'")}
    assert pids == {os.getpid(), pid}
    sampled_by = {r["metadata"]["pid"] for r in fetch(dsn, "metric_type = 'postgres'")}
    assert sampled_by == {os.getpid()}


def test_the_documented_example_runs(dsn: str) -> None:
    namespace: dict[str, Any] = {"dsn": dsn}
    exec(readme_example("sampler"), namespace)
    assert namespace["sampler"].stop(1) and namespace["writer"]._state == "closed"


def stop_in_time(sampler: Sampler, timeout: float) -> None:
    """``sampler.stop(timeout)`` on a thread of its own; the test fails if it never returns."""
    stopper = threading.Thread(target=sampler.stop, args=(timeout,), daemon=True)
    stopper.start()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive(), "stop() did not return"


def test_a_frozen_postgresql_holds_no_tick_and_no_stop(
    dsn: str, make_writer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The locks' PostgreSQL stops answering, TCP up: the ticks go on, stop() returns."""
    caplog.set_level(logging.INFO, logger="mnemo_obs.sampler")
    proxy, proxied = FreezableProxy.for_dsn(dsn)
    writer = make_writer(dsn, flush_interval=0.1)  # the rows go straight to the database
    sampler = Sampler(writer, dsn=proxied, redis_url="", interval=INTERVAL, timeout=0.5)
    try:
        sampler.start()
        wait_until("samples", lambda: sampler.samples["postgres"] >= 2)
        proxy.freeze()
        samples, health = sampler.samples["postgres"], sampler.samples["writer"]
        # Each tick records this process's writer health; the locked parts wait.
        wait_until("ticks while frozen", lambda: sampler.samples["writer"] >= health + 5)
        assert sampler.samples["postgres"] <= samples + 1
        assert sampler.held == set()
        failures = [r for r in caplog.records if "did not answer" in r.getMessage()]
        assert len(failures) == 1  # once, not every tick
        stop_in_time(sampler, 2)
    finally:
        proxy.thaw()
        sampler.stop(10)
        proxy.close()
    assert "mnemo_obs.sampler" not in [t.name for t in threading.enumerate()]


def test_a_frozen_redis_is_up_0_within_its_timeout(
    dsn: str, owned_redis: RedisServer, make_sampler: Any
) -> None:
    sampler = make_sampler(dsn, redis_url=owned_redis.url)
    sampler.start()
    wait_until("redis samples", lambda: sampler.samples["redis"] >= 2)
    assert owned_redis.process is not None
    owned_redis.process.send_signal(signal.SIGSTOP)
    try:
        samples = sampler.samples["redis"]
        wait_until("samples of a frozen Redis", lambda: sampler.samples["redis"] >= samples + 2)
        stop_in_time(sampler, 5)
    finally:
        owned_redis.process.send_signal(signal.SIGCONT)
    assert sampler._writer.flush(10)
    ups = [r["value"] for r in fetch(dsn, "metric_type = 'redis' AND metric_name = 'up'")]
    assert ups[:2] == [1.0, 1.0] and ups[-1] == 0.0
