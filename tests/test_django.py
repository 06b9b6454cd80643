"""mnemo_obs.django: a real Django project behind waitress, its rows and its monitoring URLs.

Django's settings are process-wide, so the project is configured once for
the session (``settings.configure``), from the docs' ``settings.py`` and
``urls.py`` examples plus the tests' database and tokens.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from mnemo_obs import ConfigurationError  # noqa: E402

from .httpserver import get, serving  # noqa: E402
from .logs_support import SSEClient  # noqa: E402
from .monitoring_support import (  # noqa: E402
    LOG_AUTH,
    OPTIONS,
    app_log,
    check_monitoring_routes,
    requests,
    rows_by_trace,
)
from .recording import readme_example  # noqa: E402


@pytest.fixture(scope="session")
def django_app(pg_server: Any) -> Iterator[Any]:
    """The project's WSGI application; its monitoring app closed at the end of the session."""
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    docs: dict[str, Any] = {}
    exec(readme_example("django-settings"), docs)
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF="tests.django_project",
        SECRET_KEY="only-for-the-tests",
        MIDDLEWARE=docs["MIDDLEWARE"],
        # No sampler: this monitoring app lives as long as the session, and
        # the sampler's tests count on being the only one sampling.
        MNEMO_OBS={**docs["MNEMO_OBS"], **OPTIONS, "dsn": pg_server.dsn, "sample_interval": None},
    )
    application = get_wsgi_application()
    from mnemo_obs.django import get_monitoring

    try:
        yield application
    finally:
        get_monitoring().close(10)


@pytest.fixture
def served(django_app: Any, dsn: str) -> Iterator[tuple[int, Any]]:
    from mnemo_obs.django import get_monitoring

    previous = app_log.level
    app_log.setLevel(logging.INFO)
    try:
        with serving(django_app) as port:
            yield port, get_monitoring()
    finally:
        app_log.setLevel(previous)


ROUTES = [
    ("GET", "/api/items/3", 200, "/api/items/<int:item_id>"),  # through include()
    ("GET", "/v2/shop/items/4", 200, "/v2/shop/items/<int:item_id>"),  # two includes
    ("GET", "/items/3/edit", 405, "/items/<int:item_id>/edit"),  # require_http_methods
    ("POST", "/things/tea/", 405, "/things/<slug:slug>/"),  # a class-based view
    ("GET", "/things/tea/", 200, "/things/<slug:slug>/"),
    ("GET", "/legacy/2019/", 200, "/legacy/(?P<year>[0-9]{4})/$"),  # a re_path
    ("GET", "/work", 200, "/work"),
    ("GET", "/boom", 500, "/boom"),
    ("GET", "/things/tea", 301, "<unmatched>"),  # APPEND_SLASH's redirect
    ("GET", "/nowhere", 404, "<unmatched>"),
]


def test_rows_are_named_by_the_full_route_and_the_monitoring_urls_answer(
    served: tuple[int, Any], dsn: str
) -> None:
    port, monitoring = served
    sent = requests(port, [(method, path, status) for method, path, status, _ in ROUTES])
    [work] = [trace for trace, call in sent.items() if call[1] == "/work"]
    check_monitoring_routes(
        port,
        "/monitoring",
        Counter(endpoint for *_, endpoint in ROUTES),
        work,
        ["working", "done"],
    )
    assert monitoring.writer.flush(10)
    expected = {method + path: endpoint for method, path, _, endpoint in ROUTES}
    assert rows_by_trace(dsn) == {
        trace: (expected[method + path], method, status)
        for trace, (method, path, status) in sent.items()
    }


def test_the_docs_view_sees_the_trace_id_and_skip_prefixes_apply(
    served: tuple[int, Any], dsn: str
) -> None:
    port, monitoring = served
    status, headers, body = get(port, "/api/items/9")
    assert status == 200 and body == {"id": 9, "trace_id": headers["x-trace-id"]}
    assert headers["access-control-expose-headers"] == "X-Trace-ID"
    status, headers, _ = get(port, "/static/app.css")  # the docs' skip_prefixes
    assert status == 404 and headers["x-trace-id"]
    # A W3C traceparent continues its trace, as through the WSGI wrapper.
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    status, headers, continued = get(port, "/api/items/10", headers=parent)
    assert status == 200 and continued["trace_id"] == str(uuid.UUID(trace))
    assert monitoring.writer.flush(10)
    assert rows_by_trace(dsn) == {
        body["trace_id"]: ("/api/items/<int:item_id>", "GET", 200),
        continued["trace_id"]: ("/api/items/<int:item_id>", "GET", 200),
    }


def test_the_live_log_stream_goes_through_the_include(served: tuple[int, Any]) -> None:
    port, _monitoring = served
    status, _, body = get(port, "/work")
    assert status == 200
    trace_id = body["trace_id"]
    with SSEClient(
        port, f"/monitoring/logs/stream?trace_id={trace_id}", headers=LOG_AUTH
    ) as stream:
        assert stream.headers["content-type"] == "text/event-stream"
        logs = stream.events("log", 2)
        assert [e["json"]["message"] for e in logs] == ["working", "done"]
    # The stream's slot is freed when Django closes the response.
    from mnemo_obs.django import get_monitoring

    from .recording import wait_until

    wait_until("the stream's slot to be freed", lambda: get_monitoring().logs.slots.open == 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([("dsn", "x")], "settings.MNEMO_OBS must be a dict of options"),
        ({"tokn": "x", "dsn": "x"}, "settings.MNEMO_OBS: unknown option 'tokn'"),
        ({"prefix": "/x"}, "unknown option 'prefix'"),
    ],
)
def test_bad_settings_are_refused_naming_them(value: Any, message: str) -> None:
    from mnemo_obs.django.config import split_settings

    with pytest.raises(ConfigurationError, match=message):
        split_settings(value)


def test_settings_split_between_the_middleware_and_the_monitoring_app() -> None:
    from mnemo_obs.django.config import split_settings

    monitoring, recording = split_settings({"token": "t", "skip_paths": ["/ping"]})
    assert monitoring == {"token": "t"}
    assert recording == {"skip_paths": ["/ping"], "skip_prefixes": ()}
