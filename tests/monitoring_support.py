"""Checks shared by the monitoring app, Flask and Django tests: the routes over a real server."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from typing import Any

from .httpserver import get
from .recording import UUID4, fetch

TOKEN = "summary-t0ken"
LOG_TOKEN = "log-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOG_AUTH = {"Authorization": f"Bearer {LOG_TOKEN}"}
APP_LOGGER = "tests.frameworks"
# The monitoring options every framework test uses: tokens, no Redis, no cache.
OPTIONS: dict[str, Any] = {
    "token": TOKEN,
    "log_token": LOG_TOKEN,
    "redis_url": "",
    "cache_ttl": 0,
    "log_loggers": (APP_LOGGER,),
}

app_log = logging.getLogger(APP_LOGGER)


def requests(port: int, calls: list[tuple[str, str, int]]) -> dict[str, tuple[str, str, int]]:
    """Send ``(method, path, expected status)``; {trace id: (method, path, status)}."""
    import http.client

    sent = {}
    for method, path, status in calls:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status, (method, path, resp.status)
            trace_id = resp.getheader("X-Trace-ID") or ""
            assert UUID4.fullmatch(trace_id), (method, path, trace_id)
            sent[trace_id] = (method, path, status)
        finally:
            conn.close()
    return sent


def rows_by_trace(dsn: str) -> dict[str, tuple[str, str, int]]:
    """{trace id: (endpoint, method, status)} of every api row."""
    return {
        row["metadata"]["trace_id"]: (
            row["metric_name"],
            row["metadata"]["method"],
            row["metadata"]["status_code"],
        )
        for row in fetch(dsn, "metric_type = 'api'")
    }


def check_monitoring_routes(
    port: int, prefix: str, endpoints: Counter[str], logged_trace: str, logged: list[str]
) -> None:
    """Every monitoring route under ``prefix``: token, a 400, reads, health, logs, trace ids.

    ``endpoints`` counts the app's rows by endpoint; ``logged_trace`` is a
    request that wrote ``logged`` on the app logger.
    """
    status, headers, body = get(port, f"{prefix}/summary")
    assert status == 401, body
    assert headers["www-authenticate"] == 'Bearer realm="mnemo_obs"'
    assert UUID4.fullmatch(headers["x-trace-id"])

    status, headers, body = get(port, f"{prefix}/summary", headers=AUTH)
    assert status == 200, body
    assert body["api"]["request_count"] == sum(endpoints.values())
    assert body["writer"]["enqueued"] >= sum(endpoints.values())

    status, _, body = get(port, f"{prefix}/summary?period_hours=0", headers=AUTH)
    assert status == 400
    assert "period_hours" in body["description"]
    status, _, body = get(port, f"{prefix}/endpoints?limit=x", headers=AUTH)
    assert status == 400 and "limit" in body["description"]

    status, _, body = get(port, f"{prefix}/endpoints", headers=AUTH)
    assert status == 200, body
    seen: Counter[str] = Counter()
    for entry in body["endpoints"]:
        seen[entry["endpoint"]] += entry["request_count"]
    assert seen == endpoints
    status, _, body = get(port, f"{prefix}/timeseries", headers=AUTH)
    assert status == 200 and sum(p["request_count"] for p in body["points"]) == sum(
        endpoints.values()
    )
    status, _, body = get(port, f"{prefix}/slowest?limit=100", headers=AUTH)
    assert status == 200 and len(body["requests"]) == sum(endpoints.values())
    assert get(port, f"{prefix}/endpoints")[0] == 401  # the read routes take the token too

    status, _, body = get(port, f"{prefix}/health")
    assert (status, body) == (200, {"status": "ok"})

    assert get(port, f"{prefix}/logs")[0] == 401
    status, _, body = get(port, f"{prefix}/logs?trace_id={logged_trace}", headers=LOG_AUTH)
    assert status == 200, body
    assert [r["message"] for r in body["records"]] == logged
    assert {r["trace_id"] for r in body["records"]} == {logged_trace}

    # An incoming X-Trace-ID is kept on the monitoring routes too.
    mine = str(uuid.uuid4())
    status, headers, _ = get(port, f"{prefix}/health", headers={"X-Trace-ID": mine})
    assert status == 200 and headers["x-trace-id"] == mine
    assert get(port, f"{prefix}/nothing-here")[0] == 404
