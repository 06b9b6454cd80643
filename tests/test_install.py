"""install(): recording and the monitoring routes on a Falcon app, in-process and under waitress."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import falcon
import falcon.asgi
import falcon.testing
import psycopg2
import pytest

from mnemo_obs.errors import ConfigurationError
from mnemo_obs.installation import Installation, install

from .httpserver import serving

SUMMARY = "/api/monitoring/advanced/summary"


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str = "world") -> None:
        if name == "nobody":
            raise falcon.HTTPNotFound()
        resp.media = {"hello": name}


def make_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/hello", Hello())
    app.add_route("/hello/{name}", Hello())
    return app


def api_rows(dsn: str) -> list[tuple[str, str, int]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT metric_name, metadata->>'method', (metadata->>'status_code')::int "
                "FROM metrics WHERE metric_type = 'api' ORDER BY timestamp"
            )
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture
def installed(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[falcon.App, Installation]]]:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    handles: list[Installation] = []

    def make(app: falcon.App | None = None, **kwargs: object) -> tuple[falcon.App, Installation]:
        app = app if app is not None else make_app()
        kwargs.setdefault("cache_ttl", 0)
        handle = install(app, dsn=dsn, redis_url=redis_url, **kwargs)  # type: ignore[arg-type]
        handles.append(handle)
        return app, handle

    yield make
    for handle in handles:
        handle.close(10)


def test_requests_are_recorded_and_counted_by_the_summary(
    dsn: str, installed: Callable[..., tuple[falcon.App, Installation]]
) -> None:
    app, handle = installed()
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/hello").status_code == 200
    assert client.simulate_get("/hello/ann").status_code == 200
    assert client.simulate_get("/hello/nobody").status_code == 404
    assert client.simulate_get("/nowhere").status_code == 404
    assert client.simulate_get("/health").json == {"status": "ok"}
    assert handle.writer.flush(10)

    summary = client.simulate_get(SUMMARY)
    assert summary.status_code == 200
    body = summary.json
    assert body["api"]["request_count"] == 4
    assert body["api"]["error_count"] == 2
    assert body["writer"]["written"] == 4
    assert body["writer"]["enqueued"] == 4
    assert body["redis"]["connected"] is True
    assert handle.writer.flush(10)
    # The health check and the summary itself are not recorded.
    rows = api_rows(dsn)
    assert len(rows) == 4
    assert ("/hello/{name}", "GET", 404) in rows
    assert all(SUMMARY not in name and name != "/health" for name, _m, _s in rows)


def test_close_flushes_every_row(
    dsn: str, installed: Callable[..., tuple[falcon.App, Installation]]
) -> None:
    app, handle = installed(flush_interval=60.0, batch_size=1000)
    client = falcon.testing.TestClient(app)
    for _ in range(25):
        client.simulate_get("/hello")
    assert handle.close(10) is True
    assert len(api_rows(dsn)) == 25


def test_token_protects_the_summary_not_health(
    installed: Callable[..., tuple[falcon.App, Installation]],
) -> None:
    app, handle = installed(token="t0ken")
    assert handle.token_required
    client = falcon.testing.TestClient(app)
    assert client.simulate_get(SUMMARY).status_code == 401
    ok = client.simulate_get(SUMMARY, headers={"Authorization": "Bearer t0ken"})
    assert ok.status_code == 200
    assert client.simulate_get("/health").status_code == 200


def test_installed_after_the_first_request(
    dsn: str, installed: Callable[..., tuple[falcon.App, Installation]]
) -> None:
    app = make_app()
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/hello").status_code == 200  # routes compiled, no mnemo_obs
    _app, handle = installed(app)
    assert client.simulate_get("/hello/late").status_code == 200
    assert handle.writer.flush(10)
    assert api_rows(dsn) == [("/hello/{name}", "GET", 200)]


def test_custom_prefix_health_path_and_skips(
    dsn: str, installed: Callable[..., tuple[falcon.App, Installation]]
) -> None:
    app, handle = installed(
        prefix="/ops/", health_path=None, skip_paths=("/hello",), skip_prefixes=("/hello/a",)
    )
    assert handle.summary_path == "/ops/summary"
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/health").status_code == 404
    for path in ("/hello", "/hello/ann", "/hello/bob"):
        client.simulate_get(path)
    assert client.simulate_get("/ops/summary").status_code == 200
    assert handle.writer.flush(10)
    # /health is no longer ours, so it is recorded (unmatched: a 404); /hello/ann is skipped.
    assert [name for name, _m, _s in api_rows(dsn)] == ["<unmatched>", "/hello/{name}"]


def test_refusals_leave_the_app_untouched(
    dsn: str,
    installed: Callable[..., tuple[falcon.App, Installation]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _handle = installed()
    with pytest.raises(ConfigurationError, match="already installed"):
        install(app, dsn=dsn)
    with pytest.raises(ConfigurationError, match="WSGI"):
        install(falcon.asgi.App(), dsn=dsn)
    with pytest.raises(ConfigurationError, match=r"falcon\.App"):
        install(object(), dsn=dsn)  # type: ignore[arg-type]

    taken = make_app()
    taken.add_route("/health", Hello())
    with pytest.raises(ConfigurationError, match="already has a route at '/health'"):
        install(taken, dsn=dsn)

    for kwargs, match in [
        ({"prefix": "api"}, "prefix"),
        ({"health_path": "health"}, "health_path"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": True}, "retention_days"),
        ({"retention_options": {"interval": 60}}, "retention_days"),
        ({"retention_days": 1, "retention_options": {"older_than_days": 2}}, "older_than_days"),
        ({"retention_days": 1, "retention_options": {"interval": -1}}, "interval"),
        ({"token": "two words"}, "token"),
        ({"max_queue": 0}, "max_queue"),
        ({"redis_url": "nope://x"}, "Redis URL"),
    ]:
        fresh = make_app()
        with pytest.raises(ConfigurationError, match=match):
            install(fresh, dsn=dsn, **kwargs)  # type: ignore[arg-type]
        client = falcon.testing.TestClient(fresh)
        assert client.simulate_get(SUMMARY).status_code == 404
        assert "X-Trace-ID" not in client.simulate_get("/hello").headers

    monkeypatch.delenv("MNEMO_OBS_DSN", raising=False)
    with pytest.raises(ConfigurationError, match="MNEMO_OBS_DSN"):
        install(make_app())


def test_retention_days_purges_in_the_background_until_close(
    dsn: str, installed: Callable[..., tuple[falcon.App, Installation]]
) -> None:
    from .recording import wait_until
    from .test_retention import ids_left, insert_aged

    insert_aged(dsn, [3, 5, 40])
    fresh = insert_aged(dsn, [0.5])
    _app, handle = installed(
        retention_days=2, retention_options={"first_delay": 0, "interval": 3600, "jitter": 0}
    )
    scheduler = handle.retention
    assert scheduler is not None
    wait_until("a purge", lambda: scheduler.last_deleted is not None or scheduler.last_error)
    assert (scheduler.runs, scheduler.last_deleted, scheduler.last_error) == (1, 3, None)
    assert ids_left(dsn) == set(fresh)
    assert "mnemo_obs.retention" in [t.name for t in threading.enumerate()]
    assert handle.close(10)
    assert "mnemo_obs.retention" not in [t.name for t in threading.enumerate()]


def test_dsn_from_environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_OBS_DSN", dsn)
    app = make_app()
    with install(app, redis_url="") as handle:
        falcon.testing.TestClient(app).simulate_get("/hello")
        assert handle.writer.flush(10)
    assert len(api_rows(dsn)) == 1


def test_under_a_real_waitress_server(
    dsn: str, installed: Callable[..., tuple[falcon.App, Installation]]
) -> None:
    app, handle = installed()
    with serving(app, threads=2) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for path in ("/hello", "/hello/x", "/hello/nobody"):
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                assert resp.getheader("X-Trace-ID")
            assert handle.writer.flush(10)
            conn.request("GET", SUMMARY)
            resp = conn.getresponse()
            body = json.loads(resp.read())
        finally:
            conn.close()
    assert resp.status == 200
    assert body["api"]["request_count"] == 3
    assert body["api"]["error_count"] == 1


def test_readme_example_runs(dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = readme.split("<!-- example: install -->\n```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("MNEMO_OBS_DSN", dsn)
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    assert '"redis://127.0.0.1:6379/0"' in code
    namespace: dict[str, object] = {}
    exec(
        compile(code.replace('"redis://127.0.0.1:6379/0"', repr(redis_url)), "README", "exec"),
        namespace,
    )
    app, monitoring = namespace["app"], namespace["monitoring"]
    assert isinstance(monitoring, Installation)
    try:
        client = falcon.testing.TestClient(app)  # type: ignore[arg-type]
        resp = client.simulate_get("/items/3")
        assert resp.json == {"id": "3", "trace_id": resp.headers["X-Trace-ID"]}
        assert monitoring.writer.flush(10)
        summary = client.simulate_get(SUMMARY).json
        assert summary["api"]["request_count"] == 1
        assert summary["redis"]["connected"] is True
    finally:
        monitoring.close(10)
