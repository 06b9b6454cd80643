"""MetricsMiddleware in Falcon apps (3.1 and 4.x), rows checked in a real PostgreSQL."""

from __future__ import annotations

import http.client
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest

from mnemo_obs import MetricsMiddleware, MetricsWriter, current_trace_id

from .httpserver import serving
from .recording import FAST_RETRY, UUID4, fetch, readme_example

log = logging.getLogger("tests.app")


class Items:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        log.info("serving item %s", item_id)
        resp.media = {"id": item_id, "trace_id": req.context.trace_id, "var": current_trace_id()}

    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.status = falcon.HTTP_201


class Fail:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError("the resource broke")


class Forbidden:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPForbidden(title="no", headers={"Access-Control-Expose-Headers": "X-A"})


class Logged:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        log.info("a skipped request logs")
        resp.media = {"trace_id": current_trace_id()}


class Plain:
    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        resp.text = "ok"


def build_app(writer: MetricsWriter, *before: Any, after: tuple[Any, ...] = (), **options: Any):
    middleware = MetricsMiddleware(writer, **options)
    app = falcon.App(middleware=[*before, middleware, *after])
    app.add_route("/items/{item_id}", Items())
    app.add_route("/fail", Fail())
    app.add_route("/forbidden", Forbidden())
    app.add_route("/health", Plain())
    app.add_route("/static/app.js", Plain())
    # Falcon compiles templates to Python source: a quote or backslash breaks its router.
    app.add_route('/we"ird/{x}', Plain())
    return app, middleware


@pytest.fixture
def client(dsn: str, make_writer: Any) -> tuple[falcon.testing.TestClient, MetricsWriter]:
    writer = make_writer(dsn)
    app, _ = build_app(writer)
    return falcon.testing.TestClient(app), writer


def by_trace(dsn: str) -> dict[str, dict[str, Any]]:
    return {row["metadata"]["trace_id"]: row for row in fetch(dsn)}


def test_each_request_gives_one_row_with_its_trace_id(client: Any, dsn: str) -> None:
    test_client, writer = client
    calls = [
        ("GET", "/items/1", 200, "/items/{item_id}"),
        ("GET", "/items/2", 200, "/items/{item_id}"),
        ("POST", "/items/3", 201, "/items/{item_id}"),
        ("DELETE", "/items/4", 405, "/items/{item_id}"),
        ("GET", "/no/such/route", 404, "<unmatched>"),
        ("GET", "/forbidden", 403, "/forbidden"),
        ("GET", "/fail", 500, "/fail"),
        ("GET", '/we"ird/1', 200, '/we"ird/{x}'),
        ("GE\tT\\\n", "/items/5", 400, "/items/{item_id}"),  # hostile method, stored as given
    ] * 5
    started = time.time()
    expected = {}
    for method, path, status, route in calls:
        with warnings.catch_warnings():  # Falcon 3's client warns of unknown methods
            warnings.simplefilter("ignore")
            result = test_client.simulate_request(method, path)
        assert result.status_code == status
        trace_id = result.headers["X-Trace-ID"]
        assert UUID4.fullmatch(trace_id)
        assert "X-Trace-ID" in result.headers["Access-Control-Expose-Headers"]
        expected[trace_id] = (route, method, status)
    finished = time.time()
    assert writer.flush(timeout=10)
    rows = by_trace(dsn)
    assert len(fetch(dsn)) == len(rows) == len(calls)
    for trace_id, (route, method, status) in expected.items():
        row = rows[trace_id]
        assert row["metric_type"] == "api"
        assert row["metric_name"] == route
        assert row["metadata"] == {
            "endpoint": route,
            "method": method,
            "status_code": status,
            "trace_id": trace_id,
        }
        assert row["value"] >= 0
        assert started - 1 <= row["timestamp"].timestamp() <= finished + 1


def test_the_app_sees_the_trace_id_in_context_and_logs(
    client: Any, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    from mnemo_obs import TraceIdFilter

    test_client, _ = client
    caplog.handler.addFilter(TraceIdFilter())
    with caplog.at_level(logging.INFO, logger="tests.app"):
        result = test_client.simulate_get("/items/7")
    trace_id = result.headers["X-Trace-ID"]
    assert result.json == {"id": "7", "trace_id": trace_id, "var": trace_id}
    assert [r.trace_id for r in caplog.records if r.name == "tests.app"] == [trace_id]
    assert current_trace_id() is None  # reset once the request is over


@pytest.mark.parametrize(
    "given", ["0AF76519-16CD-43DD-8448-EB211C80319C", "0af76519-16cd-43dd-8448-eb211c80319c"]
)
def test_a_valid_incoming_trace_id_is_reused(client: Any, dsn: str, given: str) -> None:
    test_client, writer = client
    result = test_client.simulate_get("/items/1", headers={"X-Trace-ID": given})
    assert result.headers["X-Trace-ID"] == given.lower()
    assert writer.flush(timeout=10)
    assert list(by_trace(dsn)) == [given.lower()]


@pytest.mark.parametrize(
    "given",
    [
        "",
        "junk",
        "0af76519-16cd-43dd-8448-eb211c80319c\r\nSet-Cookie: a=b",
        "0af76519-16cd-43dd-8448-eb211c8\r\n",
        "x" * 200,
        "0af76519\t16cd-43dd-8448-eb211c80319c",
    ],
)
def test_an_invalid_incoming_trace_id_is_replaced(client: Any, dsn: str, given: str) -> None:
    test_client, writer = client
    result = test_client.simulate_get("/items/1", headers={"X-Trace-ID": given})
    trace_id = result.headers["X-Trace-ID"]
    assert UUID4.fullmatch(trace_id) and trace_id != given
    assert "Set-Cookie" not in result.headers
    assert writer.flush(timeout=10)
    assert list(by_trace(dsn)) == [trace_id]


def test_skipped_paths_get_a_trace_id_but_no_row(
    dsn: str, make_writer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer(dsn)
    app, _ = build_app(writer, skip_prefixes=["/static/"])
    app.add_route("/health/logged", Logged())
    test_client = falcon.testing.TestClient(app)
    given = "0b6a1f2c-3d4e-4f50-8a61-7b8c9d0e1f20"
    for path in ("/health", "/static/app.js"):
        result = test_client.simulate_get(path)
        assert result.status_code == 200 and UUID4.fullmatch(result.headers["X-Trace-ID"])
        assert "X-Trace-ID" in result.headers["Access-Control-Expose-Headers"]
        kept = test_client.simulate_get(path, headers={"X-Trace-ID": given})
        assert kept.headers["X-Trace-ID"] == given
    # Log records of a skipped request carry its id too.
    from mnemo_obs import TraceIdFilter

    caplog.handler.addFilter(TraceIdFilter())
    app2, _ = build_app(writer, skip_prefixes=["/health"])
    app2.add_route("/health/logged", Logged())
    with caplog.at_level(logging.INFO, logger="tests.app"):
        logged = falcon.testing.TestClient(app2).simulate_get("/health/logged")
    assert logged.json == {"trace_id": logged.headers["X-Trace-ID"]}
    assert [r.trace_id for r in caplog.records if r.name == "tests.app"] == [
        logged.headers["X-Trace-ID"]
    ]
    test_client.simulate_get("/items/1")
    assert writer.flush(timeout=10)
    assert [r["metric_name"] for r in fetch(dsn)] == ["/items/{item_id}"]

    app, _ = build_app(writer, skip_paths=())
    falcon.testing.TestClient(app).simulate_get("/health")
    assert writer.flush(timeout=10)
    assert sorted(r["metric_name"] for r in fetch(dsn)) == ["/health", "/items/{item_id}"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"skip_paths": "/health"}, "skip_paths"),
        ({"skip_paths": ["health"]}, "'health'"),
        ({"skip_prefixes": [None]}, "None"),
    ],
)
def test_bad_skip_lists_are_refused(options: dict[str, Any], named: str) -> None:
    writer = MetricsWriter("postgresql://localhost/x")
    with pytest.raises(ValueError, match=named):
        MetricsMiddleware(writer, **options)
    with pytest.raises(TypeError, match="MetricsWriter"):
        MetricsMiddleware(object())  # type: ignore[arg-type]


def test_expose_headers_are_appended_not_clobbered(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)
    cors = falcon.CORSMiddleware(expose_headers=["X-Other"])
    # Listed first, MetricsMiddleware's process_response runs after CORS's.
    app, _ = build_app(writer, after=(cors,))
    test_client = falcon.testing.TestClient(app)
    result = test_client.simulate_get("/items/1", headers={"Origin": "https://a.example"})
    assert result.headers["Access-Control-Expose-Headers"] == "X-Other, X-Trace-ID"
    result = test_client.simulate_get("/forbidden")
    assert result.headers["Access-Control-Expose-Headers"] == "X-A, X-Trace-ID"


class _BrokenWriter(MetricsWriter):
    """A writer whose hand-off raises: the middleware must contain it."""

    def submit_request(self, *row: Any) -> bool:
        raise RuntimeError("hand-off broke")


class _DictContextRequest(falcon.Request):
    context_type = dict  # no attributes: our process_request cannot store its state


def test_our_own_failures_never_reach_the_client(caplog: pytest.LogCaptureFixture) -> None:
    writer = _BrokenWriter("postgresql://localhost/x")
    app, middleware = build_app(writer)
    test_client = falcon.testing.TestClient(app)
    with caplog.at_level(logging.ERROR, logger="mnemo_obs"):
        for path in ["/items/1", "/fail", "/nope"] * 3:
            result = test_client.simulate_get(path)
            assert result.status_code in (200, 404, 500)
            assert "X-Trace-ID" in result.headers  # set before the hand-off
    assert middleware.failures == {"process_response: RuntimeError": 9}
    assert len([r for r in caplog.records if r.name == "mnemo_obs.middleware"]) == 1

    app = falcon.App(middleware=[middleware], request_type=_DictContextRequest)
    app.add_route("/items/{item_id}", Plain())
    for _ in range(3):
        assert falcon.testing.TestClient(app).simulate_get("/items/1").status_code == 200
    assert middleware.failures["process_request: AttributeError"] == 3


def test_a_full_queue_drops_rows_not_requests(make_writer: Any) -> None:
    from .test_writer import unreachable_dsn

    writer = make_writer(unreachable_dsn(), max_queue=5, batch_size=2, **FAST_RETRY)
    app, _ = build_app(writer)
    test_client = falcon.testing.TestClient(app)
    for i in range(50):
        assert test_client.simulate_get(f"/items/{i}").status_code == 200
    stats = writer.stats()
    assert stats["enqueued"] + stats["dropped_queue_full"] == 50
    assert stats["dropped_queue_full"] >= 50 - 5 - 2


def test_database_stopped_mid_run(owned_pg: Any, make_writer: Any) -> None:
    writer = make_writer(owned_pg.dsn, max_queue=40, batch_size=10, **FAST_RETRY)
    app, _ = build_app(writer)
    test_client = falcon.testing.TestClient(app)
    for i in range(20):
        assert test_client.simulate_get(f"/items/{i}").status_code == 200
    assert writer.flush(timeout=10)
    assert len(fetch(owned_pg.dsn)) == 20

    owned_pg.stop_server()
    sent = [test_client.simulate_get(f"/items/{i}") for i in range(100)]
    assert all(r.status_code == 200 for r in sent)  # requests never wait for the database
    assert not writer.flush(timeout=0.5)
    during = writer.stats()
    assert during["last_error"] is not None
    assert during["enqueued"] - 20 + during["dropped_queue_full"] == 100
    assert during["dropped_queue_full"] >= 100 - 40 - 10

    owned_pg.start_server()
    assert writer.flush(timeout=30)
    after = writer.stats()
    rows = fetch(owned_pg.dsn)
    assert len(rows) == after["written"] == after["enqueued"] == during["enqueued"]
    assert after["dropped_queue_full"] == during["dropped_queue_full"]
    assert {row["metadata"]["trace_id"] for row in rows} >= {
        r.headers["X-Trace-ID"] for r in sent[:40]
    }
    # And it keeps going.
    test_client.simulate_get("/items/last")
    assert writer.flush(timeout=10)
    assert len(fetch(owned_pg.dsn)) == len(rows) + 1


@pytest.fixture
def served(dsn: str, make_writer: Any) -> Iterator[tuple[int, MetricsWriter]]:
    """The app behind a real waitress server on a free port, in a thread."""
    writer = make_writer(dsn)
    app, _ = build_app(writer)
    with serving(app) as port:
        yield port, writer


def test_through_a_real_waitress_server(served: tuple[int, MetricsWriter], dsn: str) -> None:
    port, writer = served
    seen = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path, status in [("/items/1", 200), ("/fail", 500), ("/nope", 404)] * 4:
            conn.request("GET", path, headers={"X-Trace-ID": "junk\tvalue"})
            response = conn.getresponse()
            response.read()
            assert response.status == status
            seen[response.getheader("X-Trace-ID")] = status
        given = "5b1f5d1e-5c3a-4b7e-9d2e-1f2a3b4c5d6e"
        conn.request("GET", "/items/2", headers={"X-Trace-ID": given})
        response = conn.getresponse()
        response.read()
        assert response.getheader("X-Trace-ID") == given
        seen[given] = 200
    finally:
        conn.close()
    assert writer.flush(timeout=10)
    rows = by_trace(dsn)
    assert {trace_id: row["metadata"]["status_code"] for trace_id, row in rows.items()} == seen


def test_the_readme_falcon_example(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_OBS_DSN", dsn)
    namespace: dict[str, Any] = {}
    exec(readme_example("falcon"), namespace)
    writer = namespace["writer"]
    try:
        result = falcon.testing.TestClient(namespace["app"]).simulate_get("/items/42")
        assert result.json["trace_id"] == result.headers["X-Trace-ID"]
        assert writer.flush(timeout=10)
        assert [r["metric_name"] for r in fetch(dsn)] == ["/items/{item_id}"]
    finally:
        writer.close()
