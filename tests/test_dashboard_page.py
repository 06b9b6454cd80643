"""The dashboard in headless Chromium against waitress and PostgreSQL, with known traffic.

The page must show exactly what the JSON routes answered, draw the charts
with every point, sort, filter and refresh by itself, and do it all with no
console error, no failed request and no request leaving 127.0.0.1.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from .browser import watched_page
from .dashboard_support import (
    DASHBOARD,
    TOKEN,
    TRAFFIC,
    number,
    running,
    send,
    wait_for_count,
)

SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def tile(page: Any, name: str, part: str = ".value") -> str:
    return page.get_by_test_id(f"tile-{name}").locator(part).inner_text()


def json_of(responses: list[Any], route: str) -> Any:
    """The body of the last response of ``route`` the page received."""
    found = [r for r in responses if urlsplit(r.url).path.endswith(f"/{route}")]
    assert found, f"the page never called {route}"
    return found[-1].json()


def endpoint_names(page: Any) -> list[str]:
    return page.get_by_test_id("endpoint-row").locator(".endpoint").all_inner_texts()


def by(field: str, rows: list[dict[str, Any]], reverse: bool) -> list[str]:
    """Endpoint names sorted as the page sorts: by ``field``, nulls last, then by name."""
    present = sorted(
        (r for r in rows if r[field] is not None),
        key=lambda r: (r[field] * (-1 if reverse else 1), f"{r['endpoint']} {r['method']}"),
    )
    absent = sorted(
        (r for r in rows if r[field] is None), key=lambda r: f"{r['endpoint']} {r['method']}"
    )
    return [r["endpoint"] for r in present + absent]


def test_the_tiles_charts_and_tables_show_what_the_json_answered(dashboard_app, browser) -> None:
    app, _handle = dashboard_app()
    with running(app) as base:
        send(base, TRAFFIC)
        wait_for_count(base, len(TRAFFIC))
        with watched_page(browser) as watch:
            page = watch.page
            responses: list[Any] = []
            page.on("response", lambda r: responses.append(r))
            first = page.goto(f"{base}{DASHBOARD}?paused=1#token={TOKEN}")
            watch.wait_refreshes(1)

            # The page itself: no data, strict headers.
            assert first is not None and first.status == 200
            headers = first.headers
            assert headers["content-security-policy"].startswith("default-src 'self'")
            assert "unsafe" not in headers["content-security-policy"]
            for name, value in SECURITY.items():
                assert headers[name] == value
            assets = [r for r in responses if "/static/" in r.url]
            assert len(assets) >= 10
            for asset in assets:
                assert asset.status == 200, asset.url
                assert asset.headers["content-security-policy"].startswith("default-src 'self'")
                assert asset.headers["x-content-type-options"] == "nosniff"
                assert asset.headers["etag"]

            # Tiles: exactly the summary the page received.
            api = json_of(responses, "summary")["api"]
            assert api["request_count"] == len(TRAFFIC) and api["error_count"] == 3
            assert tile(page, "request-count") == number(api["request_count"])
            assert tile(page, "error-rate") == f"{number(api['error_rate'])} %"
            assert tile(page, "rps") == f"{number(api['requests_per_second'])}/s"
            minute = api["last_minute"]["requests_per_second"]
            assert tile(page, "rps-minute") == f"{number(minute)}/s"
            for p in ("p50", "p95", "p99"):
                assert tile(page, p) == f"{number(api[f'{p}_latency_ms'])} ms"
                assert tile(page, p, ".sub") == "exact"
            summary = json_of(responses, "summary")
            assert tile(page, "writer") == f"queue {number(summary['writer']['queue_depth'])}"
            connections = summary["postgres"]["connections_total"]
            assert tile(page, "postgres") == f"{number(connections)} connections"
            assert tile(page, "system") == f"CPU {number(summary['system']['cpu_percent'])} %"
            assert tile(page, "redis") == "not configured"  # redis_url=""

            # Charts: one point per step of the answer.
            points = json_of(responses, "timeseries")["points"]
            assert len(points) >= 60
            for chart in ("chart-latency", "chart-traffic"):
                assert page.get_by_test_id(chart).get_attribute("data-points") == str(len(points))
                assert page.get_by_test_id(chart).locator("canvas").count() == 1

            # The endpoint table, costliest first, and the slowest requests.
            endpoints = json_of(responses, "endpoints")["endpoints"]
            assert endpoint_names(page) == by("total_time_ms", endpoints, reverse=True)
            first_row = page.get_by_test_id("endpoint-row").first.locator("td").all_inner_texts()
            top = max(endpoints, key=lambda r: r["total_time_ms"])
            assert first_row[1:5] == [
                number(top["request_count"]),
                f"{number(top['requests_per_second'])}/s",
                f"{number(top['error_rate'])} %",
                f"{number(top['p50_latency_ms'])} ms",
            ]
            slow = json_of(responses, "slowest")["requests"]
            shown = page.get_by_test_id("slow-request").get_by_test_id("trace-id").all_inner_texts()
            assert shown == [r["trace_id"] for r in slow]

            # One call per route per refresh, each with the token, never in a URL.
            for route in ("summary", "timeseries", "endpoints", "slowest"):
                calls = watch.api_calls(route)
                assert len(calls) == 1, route
                assert calls[0].headers["authorization"] == f"Bearer {TOKEN}"
            assert all(TOKEN not in r.url for r in watch.requests)
            assert "#" not in page.url
            watch.assert_clean()


def test_sorting_the_period_and_the_endpoint_filter(dashboard_app, browser) -> None:
    app, _handle = dashboard_app()
    with running(app) as base:
        send(base, TRAFFIC)
        wait_for_count(base, len(TRAFFIC))
        with watched_page(browser) as watch:
            page = watch.page
            responses: list[Any] = []
            page.on("response", lambda r: responses.append(r))
            page.goto(f"{base}{DASHBOARD}?paused=1")
            watch.wait_refreshes(1)
            endpoints = json_of(responses, "endpoints")["endpoints"]

            # Sorting: by p95, slowest first; again, fastest first; kept in the URL.
            page.get_by_test_id("sort-p95").click()
            assert endpoint_names(page) == by("p95_latency_ms", endpoints, reverse=True)
            page.get_by_test_id("sort-p95").click()
            assert endpoint_names(page) == by("p95_latency_ms", endpoints, reverse=False)
            page.get_by_test_id("sort-count").click()
            assert endpoint_names(page) == by("request_count", endpoints, reverse=True)
            assert parse_qs(urlsplit(page.url).query)["sort"] == ["count"]

            # The period: a new timeseries of that window, drawn; kept in the URL.
            with page.expect_response(
                lambda r: "period_hours=0.25" in r.url and "/timeseries" in r.url
            ) as info:
                page.get_by_test_id("period-select").select_option("0.25")
            points = info.value.json()["points"]
            watch.wait_refreshes(2)
            assert 15 <= len(points) <= 16
            chart = page.get_by_test_id("chart-latency")
            assert chart.get_attribute("data-points") == str(len(points))
            assert parse_qs(urlsplit(page.url).query)["period"] == ["0.25"]

            # A click on a row: the charts and the slowest requests of that endpoint.
            row = page.get_by_test_id("endpoint-row").filter(has_text="/slow")
            with page.expect_response(
                lambda r: "/timeseries" in r.url and "endpoint=" in r.url
            ) as info:
                row.click()
            series = info.value.json()
            watch.wait_refreshes(3)
            assert sum(p["request_count"] for p in series["points"]) == 4
            assert row.get_attribute("aria-selected") == "true"
            assert page.get_by_test_id("endpoint-filter-name").inner_text() == "/slow"
            slow_rows = page.get_by_test_id("slow-request").locator(".endpoint").all_inner_texts()
            assert slow_rows == ["/slow"] * 4
            query = parse_qs(urlsplit(page.url).query)
            assert query["endpoint"] == ["/slow"] and query["period"] == ["0.25"]

            # The URL is the view: a reload shows the same.
            page.reload()
            watch.wait_refreshes(1)
            assert page.get_by_test_id("period-select").input_value() == "0.25"
            assert page.get_by_test_id("endpoint-filter-name").inner_text() == "/slow"
            header = page.get_by_test_id("sort-count").locator("xpath=..")
            assert header.get_attribute("aria-sort") == "descending"

            # Clearing the filter shows every endpoint again.
            page.get_by_test_id("endpoint-filter-clear").click()
            watch.wait_refreshes(2)
            assert page.get_by_test_id("endpoint-filter").is_hidden()
            shown = page.get_by_test_id("slow-request").locator(".endpoint").all_inner_texts()
            assert len(set(shown)) > 1
            watch.assert_clean()


def test_auto_refresh_shows_new_requests_without_a_reload(dashboard_app, browser) -> None:
    app, _handle = dashboard_app()
    with running(app) as base:
        send(base, TRAFFIC)
        wait_for_count(base, len(TRAFFIC))
        with watched_page(browser) as watch:
            page = watch.page
            page.goto(f"{base}{DASHBOARD}?refresh=1")
            count = page.get_by_test_id("tile-request-count").locator(".value")
            count.wait_for()
            page.wait_for_function(
                "n => document.querySelector('[data-testid=tile-request-count] .value')"
                ".textContent === n",
                arg=str(len(TRAFFIC)),
            )
            send(base, ["/fast"] * 5)
            page.wait_for_function(
                "n => document.querySelector('[data-testid=tile-request-count] .value')"
                ".textContent === n",
                arg=str(len(TRAFFIC) + 5),
            )
            navigations = [r for r in watch.requests if r.resource_type == "document"]
            assert len(navigations) == 1

            # Paused, nothing more is asked.
            page.get_by_test_id("refresh-toggle").click()
            assert page.get_by_test_id("refresh-toggle").inner_text() == "Resume"
            asked = len(watch.api_calls("summary"))
            page.wait_for_timeout(2500)  # more than two refresh intervals
            assert len(watch.api_calls("summary")) == asked
            page.get_by_test_id("refresh-toggle").click()
            watch.wait_refreshes(watch.refreshes() + 1)
            assert len(watch.api_calls("summary")) > asked
            watch.assert_clean()
