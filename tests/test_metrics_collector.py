"""MetricsCollector: sections fail alone, the cache and its single flight, timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg2
import psycopg2.pool
import pytest

from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.collectors._cache import SingleFlightCache

from .servers import RedisServer
from .test_api_collector import insert


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def collector(dsn: str, redis_url: str, clock: FakeClock) -> Iterator[MetricsCollector]:
    c = MetricsCollector(dsn, redis_url=redis_url, _clock=clock)
    yield c
    c.close()


def test_all_sections(dsn: str, collector: MetricsCollector) -> None:
    insert(dsn, [(5.0, 200, 1.0), (15.0, 500, 1.0)])
    summary = collector.collect_all()
    assert set(summary) == {"api", "redis", "postgres", "system", "collected_at", "period_hours"}
    assert summary["api"]["request_count"] == 2
    assert summary["api"]["error_rate"] == 50.0
    assert summary["redis"]["connected"] is True
    assert summary["postgres"]["connections_total"] >= 1
    assert summary["system"]["cpu_count"] >= 1


def test_cached_for_ttl_then_refreshed(
    dsn: str, collector: MetricsCollector, clock: FakeClock
) -> None:
    first = collector.collect_all()
    insert(dsn, [(5.0, 200, 1.0)])
    clock.now += 1.9
    assert collector.collect_all() is first  # within 2 s: the same answer
    assert collector.collect_all(period_hours=2)["api"]["request_count"] == 1  # its own key
    clock.now += 0.2
    assert collector.collect_all()["api"]["request_count"] == 1


def test_a_failing_section_leaves_the_others(owned_pg, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    with MetricsCollector(owned_pg.dsn, redis_url=redis_url, cache_ttl=0) as collector:
        owned_pg.stop_server()
        summary = collector.collect_all()
        assert set(summary["api"]) == {"error"} and "cannot connect" in summary["api"]["error"]
        assert set(summary["postgres"]) == {"error"}
        assert summary["redis"]["connected"] is True
        assert summary["system"]["cpu_count"] >= 1
        owned_pg.start_server()
        assert collector.collect_all()["api"]["request_count"] == 0


def test_redis_down_or_absent(dsn: str, owned_redis: RedisServer) -> None:
    with MetricsCollector(dsn, redis_url=owned_redis.url, cache_ttl=0) as collector:
        owned_redis.stop_server()
        summary = collector.collect_all()
        assert summary["redis"]["connected"] is False
        assert summary["api"]["request_count"] == 0
    with MetricsCollector(dsn, redis_url="", cache_ttl=0) as collector:
        redis = collector.collect_all()["redis"]
        assert redis["connected"] is False and "no Redis configured" in redis["error"]


def test_redis_url_from_environment(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNEMO_OBS_REDIS_URL", redis_url)
    with MetricsCollector(dsn, cache_ttl=0) as collector:
        assert collector.collect_all()["redis"]["connected"] is True


def test_statement_timeout_cancels_a_hung_query(dsn: str) -> None:
    # A lock held elsewhere makes the api query wait; the timeout ends the wait.
    blocker = psycopg2.connect(dsn)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        with MetricsCollector(dsn, redis_url="", cache_ttl=0, statement_timeout=0.2) as collector:
            summary = collector.collect_all()
        assert "statement timeout" in summary["api"]["error"]
        assert "connections_total" in summary["postgres"]
    finally:
        blocker.rollback()
        blocker.close()


def test_borrows_from_a_given_pool_and_leaves_it_open(dsn: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 2, dsn)
    try:
        with MetricsCollector(pool=pool, redis_url="", cache_ttl=0) as collector:
            assert collector.collect_all()["api"]["request_count"] == 0
        assert not pool.closed
        conn = pool.getconn()
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == ("0",)  # ours was SET LOCAL: gone with our transaction
        pool.putconn(conn)
    finally:
        pool.closeall()


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_borrowed_connection_comes_back_as_it_was_lent(dsn: str, autocommit: bool) -> None:
    """The app's own transaction semantics are untouched by a summary on its pool."""
    pool = psycopg2.pool.ThreadedConnectionPool(1, 1, dsn)  # one connection: ours is the app's
    try:
        conn = pool.getconn()
        conn.autocommit = autocommit
        pool.putconn(conn)
        with MetricsCollector(pool=pool, redis_url="", cache_ttl=0) as collector:
            summary = collector.collect_all()
            assert "error" not in summary["api"] and "error" not in summary["postgres"]
        conn = pool.getconn()
        assert conn.autocommit is autocommit
        assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == ("0",)
        if not autocommit:
            # The app's INSERT followed by rollback() keeps nothing.
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO metrics (metric_type, metric_name, value) "
                    "VALUES ('system', 'rolled-back', 1)"
                )
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM metrics WHERE metric_name = 'rolled-back'")
                assert cur.fetchone() == (0,)
            conn.rollback()
        pool.putconn(conn)
    finally:
        pool.closeall()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cache_ttl": -1}, "cache_ttl"),
        ({"statement_timeout": 0}, "statement_timeout"),
        ({"redis_timeout": float("nan")}, "redis_timeout"),
        ({"redis_url": "ftp://x"}, "invalid Redis URL"),
        ({"connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_bad_settings_are_refused(dsn: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MetricsCollector(dsn, **kwargs)  # type: ignore[arg-type]


def test_no_dsn_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNEMO_OBS_DSN", raising=False)
    with pytest.raises(ValueError, match="MNEMO_OBS_DSN"):
        MetricsCollector()


def test_cache_runs_one_computation_for_concurrent_misses() -> None:
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=10)
    started = threading.Event()
    release = threading.Event()
    calls = []

    def compute() -> int:
        calls.append(1)
        started.set()
        assert release.wait(10)
        return 42

    results: list[int] = []
    leader = threading.Thread(target=lambda: results.append(cache.get("k", compute)))
    leader.start()
    assert started.wait(10)
    followers = [
        threading.Thread(target=lambda: results.append(cache.get("k", compute))) for _ in range(8)
    ]
    for thread in followers:
        thread.start()
    # Release the leader only once every follower waits on its result, so a
    # cache without single flight would have called compute() again.
    future = cache._inflight["k"]
    deadline = time.monotonic() + 10
    while len(future._condition._waiters) < 8:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "followers never waited"
        time.sleep(0.01)
    release.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert results == [42] * 9
    assert len(calls) == 1


def test_cache_does_not_keep_a_failure() -> None:
    clock = FakeClock()
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=10, clock=clock)

    def boom() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get("k", boom)
    assert cache.get("k", lambda: 7) == 7
    assert cache.get("k", boom) == 7  # cached now
    clock.now += 10
    with pytest.raises(RuntimeError):
        cache.get("k", boom)


def test_cache_is_bounded() -> None:
    clock = FakeClock()
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=10, max_entries=3, clock=clock)
    for key in range(10):
        cache.get(key, lambda key=key: key)  # type: ignore[misc]
    assert len(cache._values) == 3
    assert cache.get(9, lambda: -1) == 9
