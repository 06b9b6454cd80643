"""What is measured and who sees it: install() goes first; latency includes serialisation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.media
import falcon.testing
import pytest

from mnemo_obs import MetricsMiddleware, MetricsWriter, MetricsWSGIMiddleware
from mnemo_obs.installation import Installation, install

from .recording import UUID4, fetch

SLOW_MS = 200


class SlowJSON(falcon.media.BaseHandler):
    """A media handler that takes at least SLOW_MS to serialise: a heavy body, made certain."""

    def serialize(self, media: object, content_type: str | None = None) -> bytes:
        time.sleep(SLOW_MS / 1000)
        return json.dumps(media).encode()

    def deserialize(self, stream: Any, content_type: str | None, content_length: int | None) -> Any:
        return json.loads(stream.read())


class Big:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = list(range(300_000))


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": "world"}


class RefuseUnlessAuthorised:
    """An app's own auth middleware: a 401 before any resource runs."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.get_header("Authorization") != "Bearer app-secret":
            raise falcon.HTTPUnauthorized(title="who are you?")


@pytest.fixture
def installed(dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    handles: list[Installation] = []

    def make(app: falcon.App) -> Installation:
        handle = install(app, dsn=dsn, redis_url=redis_url, cache_ttl=0)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.close(10)


def test_requests_refused_by_the_apps_middleware_are_recorded(dsn: str, installed: Any) -> None:
    app = falcon.App(middleware=[RefuseUnlessAuthorised()])
    app.add_route("/hello", Hello())
    handle = installed(app)
    client = falcon.testing.TestClient(app)
    refused = client.simulate_get("/hello")
    allowed = client.simulate_get("/hello", headers={"Authorization": "Bearer app-secret"})
    assert (refused.status_code, allowed.status_code) == (401, 200)
    assert UUID4.fullmatch(refused.headers["X-Trace-ID"])
    assert handle.writer.flush(10)
    rows = fetch(dsn)
    assert sorted(r["metadata"]["status_code"] for r in rows) == [200, 401]
    assert refused.headers["X-Trace-ID"] in {r["metadata"]["trace_id"] for r in rows}


def test_cors_expose_headers_keep_ours(dsn: str, installed: Any) -> None:
    app = falcon.App(
        middleware=[falcon.CORSMiddleware(allow_origins="*", expose_headers=["X-Custom"])]
    )
    app.add_route("/hello", Hello())
    installed(app)
    result = falcon.testing.TestClient(app).simulate_get(
        "/hello", headers={"Origin": "http://example.test"}
    )
    exposed = {h.strip() for h in result.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"X-Custom", "X-Trace-ID"} <= exposed


def test_falcon_latency_includes_serialising_the_media(dsn: str, installed: Any) -> None:
    app = falcon.App()
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = SlowJSON()
    app.add_route("/big", Big())
    handle = installed(app)
    result = falcon.testing.TestClient(app).simulate_get("/big")
    assert result.status_code == 200 and len(result.json) == 300_000
    assert handle.writer.flush(10)
    (row,) = fetch(dsn)
    assert row["value"] >= SLOW_MS  # the serialiser's own sleep is in it


def test_a_media_body_that_cannot_be_serialised_is_recorded_as_500(
    dsn: str, make_writer: Any
) -> None:
    class Unserialisable:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"when": object()}

    writer = make_writer(dsn)
    app = falcon.App(middleware=[MetricsMiddleware(writer)])
    app.add_route("/bad", Unserialisable())
    assert falcon.testing.TestClient(app).simulate_get("/bad").status_code == 500
    assert writer.flush(10)
    assert [r["metadata"]["status_code"] for r in fetch(dsn)] == [500]


def test_the_wsgi_wrapper_measures_the_same_span(dsn: str, make_writer: Any) -> None:
    """Around a Falcon app, the wrapper's latency also includes the serialisation."""
    writer: MetricsWriter = make_writer(dsn)
    inner = falcon.App()
    inner.resp_options.media_handlers[falcon.MEDIA_JSON] = SlowJSON()
    inner.add_route("/big", Big())
    wrapped = MetricsWSGIMiddleware(inner, writer, endpoint_of=lambda environ: "/big")
    assert falcon.testing.TestClient(wrapped).simulate_get("/big").status_code == 200

    def lazy(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        time.sleep(SLOW_MS / 1000)  # before the head: in the latency
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"

    wrapped_lazy = MetricsWSGIMiddleware(lazy, writer, endpoint_of=lambda environ: "/lazy")
    assert falcon.testing.TestClient(wrapped_lazy).simulate_get("/lazy").text == "a"
    assert writer.flush(10)
    rows = {r["metric_name"]: r for r in fetch(dsn)}
    assert rows["/big"]["value"] >= SLOW_MS
    assert rows["/lazy"]["value"] >= SLOW_MS
