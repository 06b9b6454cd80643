"""The dashboard where it runs: mounted under a prefix, and with a database that refuses it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mnemo_obs.installation import install

from .browser import watched_page
from .dashboard_support import DASHBOARD, TOKEN, make_app, running, send, wait_for_count
from .servers import free_port


def tile(page: Any, name: str, part: str = ".value") -> str:
    return page.get_by_test_id(f"tile-{name}").locator(part).inner_text()


def test_the_page_works_mounted_under_a_prefix(dashboard_app, browser) -> None:
    """Its URLs are relative: behind a proxy or a WSGI mount that adds a prefix it still works."""
    app, _handle = dashboard_app(dashboard_path="/ops/dash")

    def mounted(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/mount/"):
            environ["SCRIPT_NAME"] = "/mount"
            environ["PATH_INFO"] = path[len("/mount") :]
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not here"]

    with running(mounted) as base:
        send(f"{base}/mount", ["/fast"] * 3)
        wait_for_count(f"{base}/mount", 3)
        with watched_page(browser) as watch:
            page = watch.page
            page.goto(f"{base}/mount/ops/dash?paused=1#token={TOKEN}")
            watch.wait_refreshes(1)
            assert page.get_by_test_id("tile-request-count").locator(".value").inner_text() == "3"
            page.wait_for_function(
                "() => document.querySelector('[data-testid=log-status]').textContent"
                ".startsWith('Live')"
            )
            paths = {urlsplit(r.url).path for r in watch.requests}
            assert "/mount/api/monitoring/advanced/summary" in paths
            assert all(p.startswith("/mount/") for p in paths)
            watch.assert_clean()


def test_each_part_fails_on_its_own_and_says_why(browser, monkeypatch) -> None:
    """PostgreSQL refuses connections: its tiles, the charts and tables say so; the rest shows."""
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    app = make_app()
    handle = install(
        app,
        dsn=f"postgresql://nobody@127.0.0.1:{free_port()}/nothing",
        redis_url="",
        cache_ttl=0,
        logs=False,
    )
    try:
        with running(app) as base, watched_page(browser) as watch:
            page = watch.page
            page.goto(f"{base}{DASHBOARD}?paused=1")
            watch.wait_refreshes(1)
            for name in ("request-count", "error-rate", "p95", "postgres"):
                element = page.get_by_test_id(f"tile-{name}")
                assert element.get_attribute("data-state") == "error", name
                assert tile(page, name) == "unavailable"
                assert "127.0.0.1" in tile(page, name, ".sub")  # the reason, password-free
            assert page.get_by_test_id("tile-system").get_attribute("data-state") in ("ok", "warn")
            assert page.get_by_test_id("tile-writer").get_attribute("data-state") != "error"
            chart = page.get_by_test_id("chart-latency")
            assert chart.get_attribute("data-state") == "error"
            assert "Database unavailable" in chart.locator("[data-part=error]").inner_text()
            assert "Database unavailable" in page.get_by_test_id("endpoints-table").inner_text()
            assert page.get_by_test_id("banner").is_hidden()  # the summary answered
            assert page.get_by_test_id("log-status").inner_text().startswith("Live logs are off")
            watch.assert_clean(allowed_statuses=(503,))
    finally:
        handle.close(5)
