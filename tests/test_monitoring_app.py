"""mnemo_obs.monitoring_app(): the monitoring routes for any WSGI stack, under any prefix."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import mnemo_obs
from mnemo_obs import ConfigurationError, MetricsWSGIMiddleware, monitoring_app
from mnemo_obs._support import INSTALLATIONS

from .httpserver import get, serving
from .monitoring_support import (
    OPTIONS,
    TOKEN,
    app_log,
    check_monitoring_routes,
    requests,
    rows_by_trace,
)
from .recording import readme_example


def bare_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A WSGI app with no framework: logs a line on /work, 404 elsewhere but /."""
    path = environ["PATH_INFO"]
    if path == "/work":
        app_log.info("working")
        app_log.warning("done")
    status = "200 OK" if path in ("/", "/work") else "404 Not Found"
    start_response(status, [("Content-Type", "text/plain")])
    return [environ["mnemo_obs.trace_id"].encode()]


@pytest.fixture
def monitoring(dsn: str) -> Iterator[mnemo_obs.MonitoringApp]:
    previous = app_log.level
    app_log.setLevel(logging.INFO)
    made = monitoring_app(dsn=dsn, **OPTIONS)
    try:
        yield made
    finally:
        made.close(10)
        app_log.setLevel(previous)


def test_the_wsgi_wrapper_mounts_it_at_its_prefix(
    dsn: str, monitoring: mnemo_obs.MonitoringApp
) -> None:
    app = MetricsWSGIMiddleware(
        bare_app, monitoring.writer, monitoring=monitoring, monitoring_prefix="/ops/monitoring/"
    )
    with serving(app) as port:
        # A near miss of the prefix is the app's.
        calls = [("GET", "/", 200), ("GET", "/work", 200), ("GET", "/ops/monitoringx", 404)]
        sent = requests(port, calls)
        [work] = [trace for trace, call in sent.items() if call[1] == "/work"]
        check_monitoring_routes(
            port, "/ops/monitoring", Counter({"<GET>": 3}), work, ["working", "done"]
        )
    assert monitoring.writer.flush(10)
    # One row per app request, none for the monitoring routes (nor their 401s and 404s).
    assert rows_by_trace(dsn) == {
        trace: ("<GET>", method, status) for trace, (method, _path, status) in sent.items()
    }


def test_werkzeugs_dispatcher_mounts_it_and_its_requests_still_get_trace_ids(
    dsn: str, monitoring: mnemo_obs.MonitoringApp
) -> None:
    app = DispatcherMiddleware(
        MetricsWSGIMiddleware(bare_app, monitoring.writer, endpoint_of=lambda environ: "/work"),
        {"/mon": monitoring},
    )
    with serving(app) as port:
        sent = requests(port, [("GET", "/work", 200)])
        [work] = sent
        check_monitoring_routes(port, "/mon", Counter({"/work": 1}), work, ["working", "done"])
    assert monitoring.writer.flush(10)
    assert list(rows_by_trace(dsn)) == [work]


def test_the_docs_examples_serve_a_bare_wsgi_app(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_OBS_DSN", dsn)
    monkeypatch.setenv("MNEMO_OBS_TOKEN", "s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    namespace: dict[str, Any] = {"__name__": "docs_wsgi"}
    exec(readme_example("any-wsgi"), namespace)
    monitoring = namespace["monitoring"]
    try:
        with serving(namespace["application"]) as port:
            sent = requests(port, [("GET", "/hello", 200)])
            status, _, body = get(port, "/monitoring/summary", headers=auth)
            assert status == 200 and body["api"]["request_count"] == 1
        exec(readme_example("wsgi-dispatcher"), namespace)  # the same app, mounted by werkzeug
        with serving(namespace["application"]) as port:
            sent.update(requests(port, [("GET", "/", 200)]))
            status, _, body = get(port, "/ops/monitoring/endpoints", headers=auth)
            assert status == 200
            assert [
                (e["endpoint"], e["service"], e["request_count"]) for e in body["endpoints"]
            ] == [("<GET>", "hello", 2)]
        assert rows_by_trace(dsn) == {trace: ("<GET>", "GET", 200) for trace in sent}
    finally:
        monitoring.close(10)


def test_close_stops_everything(dsn: str) -> None:
    monitoring = monitoring_app(dsn=dsn, redis_url="", log_token="t", retention_days=30)
    handler = monitoring.logs.handler
    assert handler in logging.getLogger().handlers
    # Registered where mnemo_obs.serve() and mnemo_obs.gunicorn.worker_exit close
    # everything (not called here: it would close every other test's too).
    assert monitoring.installation in INSTALLATIONS
    monitoring.writer.record("api", "/x", 1.0)
    assert monitoring.close(10)
    assert monitoring.writer.stats()["written"] == 1
    assert monitoring.writer.stats()["dropped_closed"] == 0
    assert handler not in logging.getLogger().handlers
    assert monitoring.retention is not None and monitoring.retention._thread is not None
    assert not monitoring.retention._thread.is_alive()
    assert monitoring.writer.record("api", "/x", 1.0) is False  # closed for good
    assert monitoring.close(1)  # again: the same answer


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": "/x"}, "'prefix' is decided by where the app is mounted"),
        ({"tokn": "x"}, "unknown option 'tokn'; allowed: dsn, redis_url, token"),
        ({"cache_ttl": -1}, "cache_ttl"),
        ({"logs": "yes"}, "logs must be True or False, not 'yes'"),
        ({"retention_options": {"interval": 60}}, "retention_options needs retention_days"),
    ],
)
def test_bad_options_are_refused_naming_them(
    dsn: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        monitoring_app(dsn=dsn, **options)


@pytest.mark.parametrize("prefix", ["/", "monitoring", "/a b", "/a//b", "/{x}", "", 3])
def test_the_wrapper_refuses_a_bad_prefix(monitoring: mnemo_obs.MonitoringApp, prefix: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"monitoring_prefix must be .*got {prefix!r}"):
        MetricsWSGIMiddleware(
            bare_app, monitoring.writer, monitoring=monitoring, monitoring_prefix=prefix
        )


def test_the_wrapper_refuses_a_second_writer(
    monitoring: mnemo_obs.MonitoringApp, make_writer: Any, dsn: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"pass monitoring\.writer"):
        MetricsWSGIMiddleware(bare_app, make_writer(dsn), monitoring=monitoring)
    with pytest.raises(ConfigurationError, match=r"what mnemo_obs\.monitoring_app"):
        MetricsWSGIMiddleware(bare_app, monitoring.writer, monitoring=bare_app)  # type: ignore[arg-type]


def test_the_dashboard_and_prometheus_are_served_under_the_mount(dsn: str) -> None:
    """The page at {mount}/dashboard finds its files and the JSON routes by relative URLs."""
    made = monitoring_app(dsn=dsn, prometheus_path="/metrics", **OPTIONS)
    try:
        assert {"/summary", "/health", "/metrics", "/dashboard"} <= set(made.routes)
        assert len(made.routes) == len(set(made.routes))  # each path once
        app = MetricsWSGIMiddleware(
            bare_app, made.writer, monitoring=made, monitoring_prefix="/ops"
        )
        with serving(app) as port:
            status, _, page = get(port, "/ops/dashboard")
            assert status == 200
            html = page.decode()
            [api] = re.findall(r'data-api="([^"]*)"', html)
            files = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert len(files) == 4
            base = "http://127.0.0.1/ops/dashboard"
            for url in files:
                assert get(port, urlsplit(urljoin(base, url)).path)[0] == 200, url
            summary = urlsplit(urljoin(urljoin(base, api), "summary")).path
            assert summary == "/ops/summary"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            status, _, body = get(port, summary, headers=auth)
            assert status == 200 and "api" in body
            status, _, text = get(port, "/ops/metrics", headers=auth)
            assert status == 200 and b"mnemo_obs_" in text
    finally:
        made.close(10)
    with monitoring_app(dsn=dsn, logs=False, dashboard_path=None) as bare:
        assert "/dashboard" not in bare.routes


def test_importing_mnemo_obs_loads_no_framework_but_falcon_on_demand() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mnemo_obs; "
        "assert not {'flask', 'django', 'gunicorn', 'falcon'} & set(sys.modules), "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'django', 'falcon')); "
        "mnemo_obs.monitoring_app; assert 'falcon' in sys.modules; "
        "assert not {'flask', 'django'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
