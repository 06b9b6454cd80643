"""ApiCollector against rows inserted with SQL: known latencies, statuses and timestamps."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.extras
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnemo_obs.collectors import ApiCollector, PgConnections
from mnemo_obs.errors import DatabaseError
from mnemo_obs.rollups import reads

from .servers import truncate_metrics


def percentile_cont(values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def insert(
    dsn: str,
    rows: Sequence[tuple[float, object, float]],
    metric_type: str = "api",
) -> None:
    """Insert (latency_ms, status_code, minutes_ago) rows, timestamped against the DB clock."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur,
                "INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata) "
                "SELECT now() - v.minutes * interval '1 minute', v.type, '/r', v.value, "
                "v.meta::jsonb FROM (VALUES %s) AS v(minutes, type, value, meta)",
                [
                    (minutes, metric_type, value, json.dumps({"status_code": status}))
                    for value, status, minutes in rows
                ],
                template="(%s::float8, %s, %s::float8, %s)",
            )
    finally:
        conn.close()


@pytest.fixture
def collector(dsn: str) -> Iterator[ApiCollector]:
    api = ApiCollector(dsn)
    yield api
    api.close()


def test_known_rows_give_reference_figures(dsn: str, collector: ApiCollector) -> None:
    latencies = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 50.0, 100.0, 200.0, 1000.0]
    statuses = [200, 200, 201, 404, 500, 200, 302, 503, 200, 200]
    insert(dsn, [(v, s, 10.0) for v, s in zip(latencies, statuses, strict=True)])
    # Outside the window (2 h ago) and not api rows: both ignored.
    insert(dsn, [(99999.0, 500, 120.0)] * 5)
    insert(dsn, [(88888.0, 500, 5.0)] * 5, metric_type="system")

    result = collector.collect(period_hours=1)

    assert result["request_count"] == 10
    assert result["avg_latency_ms"] == round(sum(latencies) / 10, 2)
    for key, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert result[f"{key}_latency_ms"] == round(percentile_cont(latencies, fraction), 2)
    assert result["error_count"] == 3
    assert result["error_rate"] == 30.0
    assert result["requests_per_second"] == round(10 / 3600, 2)


def test_window_follows_period_hours(dsn: str, collector: ApiCollector) -> None:
    insert(dsn, [(1.0, 200, 20.0), (2.0, 500, 40.0), (3.0, 200, 90.0), (4.0, 200, 200.0)])
    assert collector.collect(period_hours=0.5)["request_count"] == 1
    assert collector.collect(period_hours=1)["request_count"] == 2
    two_hours = collector.collect(period_hours=2)
    assert two_hours["request_count"] == 3
    assert two_hours["error_count"] == 1
    assert two_hours["avg_latency_ms"] == 2.0
    assert collector.collect(period_hours=24)["request_count"] == 4


def test_empty_window_gives_zero_counts_and_null_latencies(
    dsn: str, collector: ApiCollector
) -> None:
    insert(dsn, [(5.0, 200, 300.0)])
    result = collector.collect(period_hours=1)
    window = (result.pop("window_start"), result.pop("window_end"))
    assert result.pop("last_minute")["requests_per_second"] == 0.0
    assert result == {
        "avg_latency_ms": None,
        "p50_latency_ms": None,
        "p95_latency_ms": None,
        "p99_latency_ms": None,
        "request_count": 0,
        "requests_per_second": 0.0,
        "error_count": 0,
        "error_rate": 0.0,
        "percentiles": "exact",
        "relative_error": 0,
        "services": [],
    }
    start, end = (datetime.fromisoformat(value) for value in window)
    assert start.second == start.microsecond == 0  # rounded to the minute
    assert timedelta(hours=1) <= end - start < timedelta(hours=1, minutes=1)


def test_odd_status_codes_never_break_the_query(dsn: str, collector: ApiCollector) -> None:
    insert(dsn, [(1.0, "oops", 1.0), (1.0, None, 1.0), (1.0, 399, 1.0), (1.0, 400, 1.0)])
    result = collector.collect()
    assert result["request_count"] == 4
    assert result["error_count"] == 1


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 721, "x"])
def test_bad_period_is_refused(collector: ApiCollector, bad: object) -> None:
    with pytest.raises(ValueError, match="period_hours"):
        collector.collect(period_hours=bad)  # type: ignore[arg-type]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
            st.sampled_from([200, 201, 301, 400, 404, 500, 503]),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_matches_python_reference_for_any_rows(
    dsn: str, collector: ApiCollector, rows: list[tuple[float, int]]
) -> None:
    truncate_metrics(dsn)
    insert(dsn, [(value, status, 1.0) for value, status in rows])
    result = collector.collect()
    values = [value for value, _ in rows]
    errors = sum(1 for _, status in rows if status >= 400)
    assert result["request_count"] == len(rows)
    assert result["error_count"] == errors
    assert result["error_rate"] == round(100 * errors / len(rows), 2)
    assert result["avg_latency_ms"] == pytest.approx(round(sum(values) / len(values), 2), abs=0.011)
    for key, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        expected = round(percentile_cont(values, fraction), 2)
        assert result[f"{key}_latency_ms"] == pytest.approx(expected, abs=0.011)


def test_query_reads_the_window_through_an_index(dsn: str, layout: str) -> None:
    # Many old rows of several types: a seq scan would read them all; the
    # plan must use a timestamp index instead. (On the partitioned layout
    # rows two days old are in DEFAULT whatever the time of day, the day
    # partitions starting today; those of the window, empty, may be scanned.)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata) "
                "SELECT now() - interval '2 days' - i * interval '1 second', "
                "(ARRAY['api','system','redis'])[1 + i % 3], '/r', i, '{}' "
                "FROM generate_series(1, 20000) AS i"
            )
            cur.execute("ANALYZE metrics")
            cur.execute(
                f"EXPLAIN SELECT count(*) FROM metrics WHERE {reads.raw_filter(None, None)}",
                {"start": datetime.now(timezone.utc) - timedelta(hours=1)},
            )
            plan = "\n".join(row[0] for row in cur.fetchall())
    finally:
        conn.close()
    table = "metrics" if layout == "plain" else "metrics_default"
    assert f"Seq Scan on {table} " not in plan, plan
    indexes = ("idx_metrics_type_time", "idx_metrics_time")
    if layout == "partitioned":
        indexes = ("metrics_default_metric_type_timestamp_idx", "metrics_default_timestamp_idx")
    assert any(f"using {index} on {table} " in plan for index in indexes), plan


def test_shared_connections_and_unreachable_database(owned_pg) -> None:  # type: ignore[no-untyped-def]
    connections = PgConnections(owned_pg.dsn, connect_timeout=2)
    api = ApiCollector(connections)
    try:
        assert api.collect()["request_count"] == 0
        owned_pg.stop_server()
        with pytest.raises(DatabaseError) as info:
            api.collect()
        assert "\n" not in str(info.value)
        owned_pg.start_server()
        # The dead pooled connection was dropped: the next call reconnects.
        assert api.collect()["request_count"] == 0
    finally:
        api.close()  # shared: leaves the pool open
        connections.close()
