"""mnemo_obs.flask.init_app: a real Flask app behind waitress, its rows, its monitoring routes."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

flask = pytest.importorskip("flask")

import mnemo_obs.flask  # noqa: E402
from mnemo_obs import ConfigurationError  # noqa: E402

from .httpserver import get, serving  # noqa: E402
from .monitoring_support import (  # noqa: E402
    AUTH,
    OPTIONS,
    app_log,
    check_monitoring_routes,
    requests,
    rows_by_trace,
)
from .recording import readme_example  # noqa: E402


def make_app() -> Any:
    app = flask.Flask("shop")
    api = flask.Blueprint("api", "shop", url_prefix="/api")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        app_log.info("item %d", item_id)
        return {"id": item_id, "trace_id": flask.request.environ["mnemo_obs.trace_id"]}

    @app.route("/private", methods=["GET", "PUT"])
    def private() -> Any:
        return {"secret": True}

    @app.before_request
    def auth() -> Any:  # an app check that answers early
        if flask.request.path == "/private":
            return {"error": "who are you"}, 401
        return None

    @api.get("/things/<pk>/")
    def thing(pk: str) -> Any:
        return {"pk": pk}

    app.register_blueprint(api)
    return app


@pytest.fixture
def flask_app(dsn: str) -> Iterator[Any]:
    app = make_app()
    app.config.update(
        {f"MNEMO_OBS_{name.upper()}": value for name, value in OPTIONS.items()},
        MNEMO_OBS_DSN=dsn,
        MNEMO_OBS_PREFIX="/ops/monitoring",
    )
    previous = app_log.level
    app_log.setLevel(logging.INFO)
    monitoring = mnemo_obs.flask.init_app(app)
    try:
        yield app
    finally:
        monitoring.close(10)
        app_log.setLevel(previous)


ROUTES = [
    ("GET", "/items/3", 200, "/items/<int:item_id>"),
    ("HEAD", "/items/4", 200, "/items/<int:item_id>"),
    ("POST", "/items/3", 405, "/items/<int:item_id>"),  # Flask's url_rule is None here
    ("DELETE", "/private", 401, "/private"),  # a 405 the app answered 401 first
    ("GET", "/private", 401, "/private"),  # answered by the app's own before_request
    ("GET", "/api/things/7/", 200, "/api/things/<pk>/"),
    ("GET", "/api/things/7", 308, "<unmatched>"),  # the redirect to the trailing slash
    ("GET", "/items/x", 404, "<unmatched>"),
    ("PATCH", "/nowhere", 404, "<unmatched>"),
]


def test_rows_are_named_by_the_url_rule_even_on_a_405(flask_app: Any, dsn: str) -> None:
    monitoring = flask_app.extensions["mnemo_obs"]
    with serving(flask_app) as port:
        sent = requests(port, [(method, path, status) for method, path, status, _ in ROUTES])
        [logged] = [trace for trace, call in sent.items() if call[1] == "/items/3"][:1]
        check_monitoring_routes(
            port,
            "/ops/monitoring",
            Counter(endpoint for *_, endpoint in ROUTES),
            logged,
            ["item 3"],
        )
    assert monitoring.writer.flush(10)
    expected = {method + path: endpoint for method, path, _, endpoint in ROUTES}
    assert rows_by_trace(dsn) == {
        trace: (expected[method + path], method, status)
        for trace, (method, path, status) in sent.items()
    }


def test_the_docs_example(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_OBS_DSN", dsn)
    monkeypatch.setenv("MNEMO_OBS_TOKEN", "s3cret")
    namespace: dict[str, Any] = {"__name__": "docs_flask"}
    exec(readme_example("flask-init"), namespace)
    app, monitoring = namespace["app"], namespace["monitoring"]
    try:
        assert app.extensions["mnemo_obs"] is monitoring
        with serving(app) as port:
            status, headers, body = get(port, "/items/5")
            assert status == 200 and body == {"id": 5, "trace_id": headers["x-trace-id"]}
            requests(port, [("PUT", "/items/5", 405)])
            status, _, body = get(
                port, "/monitoring/endpoints", headers={"Authorization": "Bearer s3cret"}
            )
            assert status == 200
            assert sorted(
                (e["endpoint"], e["method"], e["service"]) for e in body["endpoints"]
            ) == [("/items/<int:item_id>", "GET", "shop"), ("/items/<int:item_id>", "PUT", "shop")]
    finally:
        monitoring.close(10)


def test_keyword_arguments_win_over_the_config(dsn: str) -> None:
    app = make_app()
    app.config.update(MNEMO_OBS_DSN="postgresql://nobody@127.0.0.1:1/none", MNEMO_OBS_TOKEN="a")
    monitoring = mnemo_obs.flask.init_app(app, dsn=dsn, token="b", logs=False, prefix="/m")
    try:
        with serving(app) as port:
            assert get(port, "/m/summary", headers={"Authorization": "Bearer a"})[0] == 401
            status, _, body = get(port, "/m/summary", headers={"Authorization": "Bearer b"})
            assert status == 200 and "error" not in body["api"]  # the argument's database
            assert get(port, "/api/monitoring/advanced/summary")[0] == 404  # the app's 404
        assert monitoring.logs is None
    finally:
        monitoring.close(10)


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ({"MNEMO_OBS_TOKN": "x"}, {}, r"app.config\['MNEMO_OBS_TOKN'\] is not a mnemo_obs setting"),
        ({}, {"tokn": "x"}, "init_app\\(\\): unknown option 'tokn'"),
        ({"MNEMO_OBS_PREFIX": "/"}, {}, "prefix must be a path"),
        ({}, {"skip_paths": "/health"}, "skip_paths must be a list of paths"),
        ({"MNEMO_OBS_RETENTION_DAYS": -1}, {}, "retention_days must be a finite number"),
    ],
)
def test_bad_settings_are_refused_naming_them(
    dsn: str, config: dict[str, Any], overrides: dict[str, Any], message: str
) -> None:
    app = make_app()
    app.config.update(config, MNEMO_OBS_DSN=dsn)
    wsgi_app = app.wsgi_app
    with pytest.raises(ConfigurationError, match=message):
        mnemo_obs.flask.init_app(app, **overrides)
    assert "mnemo_obs" not in app.extensions and app.wsgi_app == wsgi_app


def test_a_second_init_app_is_refused(flask_app: Any) -> None:
    with pytest.raises(ConfigurationError, match="already initialised"):
        mnemo_obs.flask.init_app(flask_app)


def test_monitoring_routes_skip_the_apps_before_request(flask_app: Any) -> None:
    calls: list[str] = []
    flask_app.before_request(lambda: calls.append(flask.request.path))
    with serving(flask_app) as port:
        assert get(port, "/ops/monitoring/health")[0] == 200
        assert get(port, "/ops/monitoring/summary", headers=AUTH)[0] == 200
        assert get(port, "/items/1")[0] == 200
    assert calls == ["/items/1"]
