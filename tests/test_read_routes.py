"""GET {prefix}/endpoints, /timeseries and /slowest through a real waitress server."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import falcon
import pytest

from mnemo_obs.installation import Installation, install
from mnemo_obs.rollups import reads

from .httpserver import get, serving

PREFIX = "/api/monitoring/advanced"
TOKEN = "route-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        time.sleep(0.02 if item_id == "slow" else 0)
        if item_id == "bad":
            raise falcon.HTTPNotFound()
        resp.media = {"id": item_id}


@pytest.fixture
def served(dsn: str, redis_url: str) -> Iterator[tuple[int, Installation]]:
    app = falcon.App()
    app.add_route("/items/{item_id}", Item())
    handle = install(
        app, dsn=dsn, redis_url=redis_url, token=TOKEN, cache_ttl=0, service="shop", logs=False
    )
    try:
        with serving(app) as port:
            yield port, handle
    finally:
        handle.close(10)


def traffic(port: int) -> list[str]:
    traces = []
    for item in ("a", "b", "slow", "bad", "a", "a"):
        status, headers, _ = get(port, f"/items/{item}")
        assert status in (200, 404)
        traces.append(headers["x-trace-id"])
    return traces


def read(port: int, route: str, query: str = "") -> Any:
    status, _, body = get(port, f"{PREFIX}/{route}{query}", headers=AUTH)
    assert status == 200, body
    return body


@pytest.mark.parametrize("exact", [True, False], ids=["raw rows", "rollups"])
def test_endpoints_timeseries_and_slowest(
    served: tuple[int, Installation], exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not exact:
        monkeypatch.setattr(reads, "EXACT_MAX_ROWS", 0)
    port, _handle = served
    traces = traffic(port)

    view = read(port, "endpoints")
    assert view["percentiles"] == ("exact" if exact else "approximate")
    assert view["relative_error"] == (0 if exact else 0.01)
    (entry,) = view["endpoints"]
    assert (entry["service"], entry["endpoint"], entry["method"]) == (
        "shop",
        "/items/{item_id}",
        "GET",
    )
    assert (entry["request_count"], entry["error_count"]) == (6, 1)
    assert entry["max_latency_ms"] >= 20  # the slow one
    assert entry["total_time_ms"] >= entry["max_latency_ms"]
    start, end = (datetime.fromisoformat(view[k]) for k in ("window_start", "window_end"))
    assert timedelta(hours=1) <= end - start < timedelta(hours=1, minutes=1)

    series = read(port, "timeseries")
    assert series["step_seconds"] == 60
    points = series["points"]
    assert 60 <= len(points) <= 61  # contiguous, covering the window
    starts = [datetime.fromisoformat(p["start"]) for p in points]
    assert all(b - a == timedelta(seconds=60) for a, b in itertools.pairwise(starts))
    assert sum(p["request_count"] for p in points) == 6
    assert sum(p["error_count"] for p in points) == 1
    empty = [p for p in points if p["request_count"] == 0]
    assert empty and all(p["p50_latency_ms"] is None for p in empty)  # no holes, no made-up 0
    assert read(port, "timeseries", "?endpoint=/nowhere")["points"][0]["request_count"] == 0

    slow = read(port, "slowest", "?limit=3")
    first = slow["requests"][0]
    assert first["trace_id"] == traces[2] and first["latency_ms"] >= 20
    assert first["status_code"] == 200 and first["service"] == "shop"
    latencies = [r["latency_ms"] for r in slow["requests"]]
    assert latencies == sorted(latencies, reverse=True)

    assert read(port, "endpoints", "?service=shop")["endpoints"]
    assert read(port, "endpoints", "?service=")["endpoints"] == []  # rows of no service
    assert read(port, "endpoints", "?service=other")["endpoints"] == []


def test_the_summary_lists_the_services_and_filters_by_one(
    served: tuple[int, Installation],
) -> None:
    port, _handle = served
    traffic(port)
    summary = read(port, "summary")
    assert summary["api"]["services"] == ["shop"]
    assert summary["api"]["request_count"] == 6
    assert read(port, "summary", "?service=nope")["api"]["request_count"] == 0


def test_an_empty_window_gives_zeros_and_nulls(served: tuple[int, Installation]) -> None:
    port, _handle = served
    assert read(port, "endpoints", "?period_hours=720")["endpoints"] == []
    series = read(port, "timeseries", "?period_hours=24")
    assert series["step_seconds"] == 900
    assert all(p["request_count"] == 0 and p["p99_latency_ms"] is None for p in series["points"])
    assert read(port, "slowest")["requests"] == []


@pytest.mark.parametrize(
    ("route", "query", "named"),
    [
        ("endpoints", "?limit=0", "limit"),
        ("endpoints", "?limit=1001", "limit"),
        ("endpoints", "?limit=ten", "limit"),
        ("endpoints", "?period_hours=0", "period_hours"),
        ("endpoints", "?period_hours=721", "period_hours"),
        ("endpoints", "?period_hours=nan", "period_hours"),
        ("endpoints", "?bogus=1", "bogus"),
        ("endpoints", "?limit=1&limit=2", "limit"),
        ("slowest", "?limit=101", "limit"),
        ("slowest", "?endpoint=/a&endpoint=/b", "endpoint"),
        ("timeseries", "?step_seconds=90", "step_seconds"),
        ("timeseries", "?step_seconds=30", "step_seconds"),
        ("timeseries", "?step_seconds=60&period_hours=720", "step_seconds"),
        ("timeseries", "?period_hours=1&step_seconds=abc", "step_seconds"),
        ("summary", "?whatever=1", "whatever"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(
    served: tuple[int, Installation], route: str, query: str, named: str
) -> None:
    port, _handle = served
    status, headers, body = get(port, f"{PREFIX}/{route}{query}", headers=AUTH)
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert named in str(body)


def test_the_read_routes_need_the_token(served: tuple[int, Installation]) -> None:
    port, _handle = served
    for route in ("endpoints", "timeseries", "slowest"):
        status, headers, _ = get(port, f"{PREFIX}/{route}")
        assert status == 401 and "x-trace-id" in headers
