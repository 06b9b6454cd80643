"""MetricsWSGIMiddleware around Flask and bare WSGI apps, rows checked in a real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from mnemo_obs import MetricsWSGIMiddleware, current_trace_id

from .recording import UUID4, fetch, readme_example


def by_trace(dsn: str) -> dict[str, dict[str, Any]]:
    return {row["metadata"]["trace_id"]: row for row in fetch(dsn)}


def test_the_readme_flask_example(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_OBS_DSN", dsn)
    namespace: dict[str, Any] = {"__name__": "readme_flask"}
    exec(readme_example("flask"), namespace)
    app, writer = namespace["app"], namespace["writer"]
    try:
        client = app.test_client()
        expected = {}
        for method, path, status, endpoint in [
            ("GET", "/items/3", 200, "/items/<int:item_id>"),
            ("GET", "/items/x", 404, "<unmatched>"),
            ("POST", "/items/3", 405, "<unmatched>"),
            ("GET", "/nothing/here", 404, "<unmatched>"),
        ]:
            response = client.open(path, method=method)
            assert response.status_code == status
            trace_id = response.headers["X-Trace-ID"]
            assert UUID4.fullmatch(trace_id)
            assert response.headers["Access-Control-Expose-Headers"] == "X-Trace-ID"
            if status == 200:
                assert response.json == {"id": 3, "trace_id": trace_id}
            expected[trace_id] = (endpoint, method, status)
        assert writer.flush(timeout=10)
        rows = by_trace(dsn)
        assert {
            trace_id: (
                row["metric_name"],
                row["metadata"]["method"],
                row["metadata"]["status_code"],
            )
            for trace_id, row in rows.items()
        } == expected
    finally:
        writer.close()


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    logging.getLogger("tests.wsgi").info("hello")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Access-Control-Expose-Headers", "X-A")]
    )
    return [(current_trace_id() or "-").encode()]


def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    raise RuntimeError("the app broke")


def lazy(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    # A generator: start_response is only called on the first iteration.
    start_response("202 Accepted", [("Content-Type", "text/plain")])
    yield b"later"


def test_a_bare_app_gets_a_name_per_method(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)
    client = Client(MetricsWSGIMiddleware(hello, writer))
    expected = {}
    for method in ("GET", "POST", "BREW\t\\"):
        response = client.open("/any/path/123", method=method)
        trace_id = response.headers["X-Trace-ID"]
        assert response.get_data() == trace_id.encode()
        assert response.headers["Access-Control-Expose-Headers"] == "X-A, X-Trace-ID"
        expected[trace_id] = method
    assert writer.flush(timeout=10)
    rows = by_trace(dsn)
    assert {t: (r["metric_name"], r["metadata"]["method"]) for t, r in rows.items()} == {
        t: ({"GET": "<GET>", "POST": "<POST>"}.get(m, "<OTHER>"), m) for t, m in expected.items()
    }


def test_an_exception_is_recorded_as_500_and_raised(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)
    middleware = MetricsWSGIMiddleware(broken, writer)
    with pytest.raises(RuntimeError, match="the app broke"):
        middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda *a: None)
    assert current_trace_id() is None
    assert writer.flush(timeout=10)
    [row] = fetch(dsn)
    assert (row["metric_name"], row["metadata"]["status_code"]) == ("<GET>", 500)


def test_a_lazy_app_is_recorded_when_closed(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)
    response = Client(MetricsWSGIMiddleware(lazy, writer)).get("/lazy")
    assert response.status_code == 202 and response.get_data() == b"later"
    assert writer.flush(timeout=10)
    assert fetch(dsn) == []  # not before the server closes the body
    response.close()
    assert writer.flush(timeout=10)
    [row] = fetch(dsn)
    assert row["metadata"]["status_code"] == 202
    assert row["metadata"]["trace_id"] == response.headers["X-Trace-ID"]


HOSTILE = ["/a\tb", "/n\nl", "/c\rr", "/b\\s", "/nul\x00", "\\N", "/q\"'{x}", "/" + "x" * 150]


def test_hostile_endpoint_names_are_stored_as_given(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)
    names = iter(HOSTILE)
    client = Client(MetricsWSGIMiddleware(hello, writer, endpoint_of=lambda environ: next(names)))
    for _ in HOSTILE:
        assert client.get("/").status_code == 200
    assert writer.flush(timeout=10)
    rows = fetch(dsn)
    assert sorted(r["metric_name"] for r in rows) == sorted(
        n.replace("\x00", "")[:100] for n in HOSTILE
    )
    assert sorted(r["metadata"]["endpoint"] for r in rows) == sorted(
        n.replace("\x00", "") for n in HOSTILE
    )
    assert writer.stats()["rejected"] == 0


def test_skip_list_and_a_failing_endpoint_of(
    dsn: str, make_writer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer(dsn)

    def endpoint_of(environ: dict[str, Any]) -> str:
        raise KeyError("no route")

    middleware = MetricsWSGIMiddleware(
        hello, writer, skip_prefixes=("/static/",), endpoint_of=endpoint_of
    )
    client = Client(middleware)
    for path in ("/health", "/metrics", "/static/a.css"):  # an id, no row
        assert UUID4.fullmatch(client.get(path).headers["X-Trace-ID"])
    with caplog.at_level(logging.ERROR, logger="mnemo_obs"):
        for _ in range(3):
            assert client.get("/counted").status_code == 200
    assert middleware.failures == {"endpoint_of: KeyError": 3}
    assert len([r for r in caplog.records if r.name == "mnemo_obs.middleware"]) == 1
    assert writer.flush(timeout=10)
    assert [r["metric_name"] for r in fetch(dsn)] == ["<unmatched>"] * 3


def test_bad_arguments_are_refused(make_writer: Any) -> None:
    writer = make_writer("postgresql://localhost/x")
    with pytest.raises(TypeError, match="WSGI"):
        MetricsWSGIMiddleware(None, writer)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="endpoint_of"):
        MetricsWSGIMiddleware(hello, writer, endpoint_of="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="skip_paths"):
        MetricsWSGIMiddleware(hello, writer, skip_paths="/health")
