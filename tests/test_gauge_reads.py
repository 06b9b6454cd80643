"""Reads of the sampled rows: hit ratios over the window, and GET {prefix}/gauges."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import falcon
import psycopg2
import pytest
import redis

from mnemo_obs import MetricsWriter
from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.installation import Installation, install
from mnemo_obs.sampler import Sampler

from .httpserver import get, serving
from .recording import fetch, wait_until
from .servers import OwnedPostgres, RedisServer

PREFIX = "/api/monitoring/advanced"
TOKEN = "gauge-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def manual(dsn: str) -> Iterator[Any]:
    """``manual(redis_url)``: a sampler that samples only when told (its interval is an hour)."""
    made: list[tuple[Sampler, MetricsWriter]] = []

    def make(redis_url: str = "") -> Sampler:
        writer = MetricsWriter(dsn, flush_interval=0.1)
        sampler = Sampler(writer, redis_url=redis_url, interval=3600)
        made.append((sampler, writer))
        return sampler

    yield make
    for sampler, writer in made:
        sampler.stop(10)
        writer.close(10)


def lookups(client: redis.Redis, hits: int, misses: int) -> None:
    client.set("present", "1")
    for _ in range(hits):
        assert client.get("present") == b"1"
    for _ in range(misses):
        assert client.get("absent") is None


def increase(values: list[tuple[int, str]]) -> int:
    """A counter's increase over samples ``(value, epoch)``: a drop or a new epoch counts from 0."""
    total = 0
    for (before, epoch_before), (after, epoch) in itertools.pairwise(values):
        total += after - before if after >= before and epoch == epoch_before else after
    return total


def test_redis_hit_rate_over_the_window_across_a_restart_and_a_stats_reset(
    dsn: str, owned_redis: RedisServer, manual: Any
) -> None:
    sampler = manual(owned_redis.url)
    client = redis.Redis.from_url(owned_redis.url, socket_timeout=5)
    seen: list[dict[str, Any]] = []

    def sample() -> None:
        seen.append(client.info())  # INFO does not count as a lookup
        assert "redis" in sampler.sample_once()

    try:
        sample()
        lookups(client, hits=3, misses=2)
        sample()
        owned_redis.stop_server()
        owned_redis.start_server()
        # More lookups than before the restart: only its new run_id tells the reset.
        lookups(client, hits=4, misses=3)
        sample()
        lookups(client, hits=2, misses=0)
        sample()
        client.config_resetstat()  # the counters drop, the run_id stays
        lookups(client, hits=1, misses=1)
        sample()
    finally:
        client.close()
    assert sampler._writer.flush(10)
    # By hand, from what INFO said at each sample.
    hits = increase([(info["keyspace_hits"], info["run_id"]) for info in seen])
    misses = increase([(info["keyspace_misses"], info["run_id"]) for info in seen])
    assert (hits, misses) == (3 + 4 + 2 + 1, 2 + 3 + 0 + 1)
    with MetricsCollector(dsn, redis_url=owned_redis.url, cache_ttl=0) as collector:
        section = collector.collect_all(1)["redis"]
    assert section["hit_rate_window"] == round(100 * hits / (hits + misses), 2)
    counts = section["window_counters"]
    assert (counts["keyspace_hits"], counts["keyspace_misses"]) == (hits, misses)
    assert (counts["samples"], counts["resets"]) == (5, 2)
    # Beside it, since the last reset: what INFO says now.
    assert section["hit_rate"] == 50.0


def test_postgres_cache_hit_ratio_over_the_window_across_a_stats_reset(
    owned_pg: OwnedPostgres,
) -> None:
    writer = MetricsWriter(owned_pg.dsn, flush_interval=0.1)
    sampler = Sampler(writer, redis_url="", interval=3600)
    conn = psycopg2.connect(owned_pg.dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE filler AS SELECT generate_series(1, 20000) AS n")
            for step in range(5):
                cur.execute("SELECT count(*) FROM filler")  # block reads, mostly hits
                cur.execute("SELECT pg_stat_force_next_flush()")
                assert "postgres" in sampler.sample_once()
                if step == 2:
                    cur.execute("SELECT pg_stat_reset()")  # a new stats_reset: counters restart
        assert writer.flush(10)
    finally:
        conn.close()
        sampler.stop(10)
        writer.close(10)
    rows = fetch(
        owned_pg.dsn, "metric_type = 'postgres' AND metric_name IN ('blks_hit', 'blks_read')"
    )

    def samples(name: str) -> list[tuple[int, str]]:
        return [(int(r["value"]), r["metadata"]["epoch"]) for r in rows if r["metric_name"] == name]

    assert len({epoch for _value, epoch in samples("blks_hit")}) == 2  # the reset is in the rows
    hits, reads_ = increase(samples("blks_hit")), increase(samples("blks_read"))
    with MetricsCollector(owned_pg.dsn, redis_url="", cache_ttl=0) as collector:
        section = collector.collect_all(1)["postgres"]
    counts = section["window_counters"]
    assert (counts["blks_hit"], counts["blks_read"]) == (hits, reads_)
    assert (counts["samples"], counts["resets"]) == (5, 1)
    assert section["cache_hit_ratio_window"] == round(100 * hits / (hits + reads_), 2)
    assert section["commits_per_second_window"] > 0


def test_no_samples_in_the_window_give_nulls_beside_the_live_figures(
    dsn: str, redis_url: str
) -> None:
    with MetricsCollector(dsn, redis_url=redis_url, cache_ttl=0) as collector:
        summary = collector.collect_all(1)
    assert summary["redis"]["hit_rate_window"] is None
    assert summary["redis"]["window_counters"]["samples"] == 0
    assert summary["postgres"]["cache_hit_ratio_window"] is None
    assert summary["postgres"]["cache_hit_ratio"] is not None
    assert "fleet" not in summary  # only on request (the summary route's writer section)


@pytest.fixture
def served(dsn: str, redis_url: str) -> Iterator[tuple[int, Installation]]:
    app = falcon.App()
    handle = install(
        app,
        dsn=dsn,
        redis_url=redis_url,
        token=TOKEN,
        cache_ttl=0,
        logs=False,
        sample_interval=3600,
    )
    try:
        with serving(app) as port:
            yield port, handle
    finally:
        handle.close(10)


def gauge(port: int, query: str) -> Any:
    status, _, body = get(port, f"{PREFIX}/gauges?{query}", headers=AUTH)
    assert status == 200, body
    return body


def test_a_gauge_as_contiguous_points_of_each_source(served: tuple[int, Installation]) -> None:
    port, handle = served
    assert handle.sampler is not None
    for _ in range(3):
        handle.sampler.sample_once()
    assert handle.writer.flush(10)
    body = gauge(port, "metric_type=redis&metric_name=memory_used_mb&period_hours=0.5")
    assert (body["kind"], body["scope"], body["step_seconds"]) == ("gauge", "cluster", 60)
    (series,) = body["series"]
    assert series["samples"] == 3 and series["gaps"] == []
    points = series["points"]
    assert len(points) in (30, 31)  # from the aligned start to now: no holes
    full = [p for p in points if p["samples"]]
    assert sum(p["samples"] for p in full) == 3
    assert all(p["value"] > 0 and p["min"] <= p["value"] <= p["max"] for p in full)
    assert all(p["value"] is None and p["min"] is None for p in points if not p["samples"])
    counter = gauge(port, "metric_type=postgres&metric_name=xact_commit&step_seconds=3600")
    assert counter["kind"] == "counter"
    (point,) = [p for p in counter["series"][0]["points"] if p["samples"]]
    # (PostgreSQL publishes a session's counts about once a second: maybe none yet.)
    assert point["samples"] == 3 and point["increase"] >= 0 and counter["series"][0]["resets"] == 0
    writer = gauge(port, "metric_type=system&metric_name=writer_enqueued")
    (series,) = writer["series"]
    assert (series["pid"], series["host"], writer["scope"]) == (
        handle.sampler._rows._pid,
        handle.sampler._host,
        "process",
    )


def test_an_outage_is_reported_as_a_gap(dsn: str, owned_redis: RedisServer) -> None:
    app = falcon.App()
    with install(
        app, dsn=dsn, redis_url=owned_redis.url, logs=False, cache_ttl=0, sample_interval=0.2
    ) as handle:
        sampler = handle.sampler
        assert sampler is not None
        wait_until("redis samples", lambda: sampler.samples["redis"] >= 3)
        owned_redis.stop_server()

        def down_samples() -> int:
            handle.writer.flush(10)
            return len(fetch(dsn, "metric_type = 'redis' AND metric_name = 'up' AND value = 0"))

        # Over two seconds down (11 intervals), so at least one whole 1-second step.
        wait_until("a long enough outage", lambda: down_samples() >= 12)
        owned_redis.start_server()
        back = sampler.samples["redis"]
        wait_until("samples again", lambda: sampler.samples["redis"] >= back + 3)
        assert handle.writer.flush(10)
        with serving(app) as port:
            query = "metric_type=redis&metric_name={}&period_hours=0.05&step_seconds=1"
            memory = get(port, f"{PREFIX}/gauges?{query.format('memory_used_mb')}")[2]
            up = get(port, f"{PREFIX}/gauges?{query.format('up')}")[2]
    (series,) = memory["series"]
    assert series["gaps"], "the outage is a gap"
    empty = {p["start"] for p in series["points"] if not p["samples"]}
    for gap in series["gaps"]:
        assert gap["start"] in empty
    (ups,) = up["series"]
    sampled = [p for p in ups["points"] if p["samples"]]
    # Down, reported as such, then back.
    assert sampled[0]["max"] == 1 and 0 in [p["min"] for p in sampled] and sampled[-1]["max"] == 1


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("", "metric_type"),
        ("metric_type=redis", "metric_name"),
        ("metric_type=api&metric_name=x", "metric_type"),
        ("metric_type=redis&metric_name=blks_hit", "metric_name"),
        ("metric_type=redis&metric_name=up&period_hours=0", "period_hours"),
        ("metric_type=redis&metric_name=up&step_seconds=0", "step_seconds"),
        ("metric_type=redis&metric_name=up&step_seconds=1.5", "step_seconds"),
        ("metric_type=redis&metric_name=up&period_hours=24&step_seconds=1", "step_seconds"),
        ("metric_type=redis&metric_type=redis&metric_name=up", "metric_type"),
        ("metric_type=redis&metric_name=up&service=x", "service"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(
    served: tuple[int, Installation], query: str, named: str
) -> None:
    port, _ = served
    status, _, body = get(port, f"{PREFIX}/gauges?{query}", headers=AUTH)
    assert status == 400, body
    assert named in body["description"] or named in body.get("title", "")


def test_the_gauges_need_the_token_and_a_database_that_answers(
    served: tuple[int, Installation], owned_pg: OwnedPostgres
) -> None:
    port, _ = served
    assert get(port, f"{PREFIX}/gauges?metric_type=redis&metric_name=up")[0] == 401
    app = falcon.App()
    with install(app, dsn=owned_pg.dsn, redis_url="", logs=False, cache_ttl=0) as handle:
        owned_pg.stop_server()
        with serving(app) as other:
            status, _, body = get(other, f"{PREFIX}/gauges?metric_type=postgres&metric_name=up")
            assert status == 400  # up is a Redis gauge
            status, _, body = get(
                other, f"{PREFIX}/gauges?metric_type=postgres&metric_name=db_size_mb"
            )
        assert status == 503 and "PostgreSQL" in body["description"]
        assert handle.close(10)
