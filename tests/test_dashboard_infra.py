"""The dashboard's infrastructure panel in headless Chromium, against a running sampler.

Closed (the default) it must call nothing; opened, it draws the four gauges
of ``/gauges`` (one line per source, every point), keeps its state in the
URL, refreshes on its own slower clock, and shows an empty or an error
state per chart, all with no console error and no request leaving 127.0.0.1.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .browser import watched_page
from .dashboard_support import DASHBOARD, api, running
from .recording import wait_until

GAUGES = (
    "redis.memory_used_mb",
    "postgres.connections_total",
    "system.cpu_percent",
    "system.memory_percent",
)
EMPTY = "No samples in this window"


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def gauge_of(url: str) -> str:
    query = query_of(url)
    return f"{query['metric_type']}.{query['metric_name']}"


def panel_loads(page: Any) -> int:
    return int(page.get_by_test_id("infra-panel").get_attribute("data-refreshes") or 0)


def wait_panel_loads(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=infra-panel]')"
        ".dataset.refreshes || 0) >= n",
        arg=count,
    )


def chart(page: Any, gauge: str) -> Any:
    return page.locator(f'[data-testid="infra-chart"][data-gauge="{gauge}"]')


def last_answers(responses: list[Any]) -> dict[str, Any]:
    """The last /gauges response the page received, per gauge."""
    found = {}
    for response in responses:
        if urlsplit(response.url).path.endswith("/gauges"):
            found[gauge_of(response.url)] = response
    return found


def test_closed_it_calls_nothing_opened_it_draws_what_the_gauges_route_answered(
    dashboard_app, browser, redis_url: str
) -> None:
    app, _handle = dashboard_app(redis_url=redis_url, sample_interval=0.5)
    with running(app) as base:

        def sampled() -> bool:
            for gauge in GAUGES:
                metric_type, metric_name = gauge.split(".")
                body = api(base, f"gauges?metric_type={metric_type}&metric_name={metric_name}")
                if sum(s["samples"] for s in body["series"]) < 2:
                    return False
            return True

        wait_until("two samples of each gauge", sampled)
        with watched_page(browser) as watch:
            page = watch.page
            responses: list[Any] = []
            page.on("response", lambda r: responses.append(r))

            # Closed: several refreshes of the page, not one call to /gauges.
            page.goto(f"{base}{DASHBOARD}?refresh=1")
            watch.wait_refreshes(3)
            panel = page.get_by_test_id("infra-panel")
            assert panel.get_attribute("open") is None
            assert watch.api_calls("gauges") == []
            assert "infra" not in query_of(page.url)

            # Opened: its four calls at once, each chart drawn from its answer.
            panel.locator("summary").click()
            wait_panel_loads(page, 1)
            assert query_of(page.url)["infra"] == "1"
            calls = watch.api_calls("gauges")
            assert sorted(gauge_of(r.url) for r in calls) == sorted(GAUGES)
            assert all(query_of(r.url)["period_hours"] == "1" for r in calls)
            answers = last_answers(responses)
            assert page.get_by_test_id("infra-chart").count() == len(GAUGES)
            for gauge in GAUGES:
                shown = chart(page, gauge)
                body = answers[gauge].json()
                sources = [s["source"] for s in body["series"]]
                points = len(body["series"][0]["points"])
                assert sources and points >= 60, (gauge, body)
                assert shown.get_attribute("data-state") == "ok", gauge
                assert shown.get_attribute("data-series") == str(len(sources))
                assert shown.get_attribute("data-points") == str(points)
                assert shown.locator("canvas").count() == 1
                # One line per source: uPlot's legend lists the time, then each line.
                labels = shown.locator(".u-legend .u-series .u-label").all_inner_texts()
                assert labels[1:] == sources, gauge
                assert shown.locator('[data-part="empty"]').is_hidden()
                # The same parameters asked directly: the same sources, the same
                # points (one more if a step boundary passed since).
                direct = api(base, f"gauges?{urlsplit(answers[gauge].url).query}")
                assert [s["source"] for s in direct["series"]] == sources
                assert len(direct["series"][0]["points"]) - points in (0, 1)
            redis = urlsplit(redis_url)
            redis_sources = [s["source"] for s in answers["redis.memory_used_mb"].json()["series"]]
            assert redis_sources == [f"{redis.hostname}:{redis.port}"]

            # Its own clock: more refreshes of the page, no more calls to /gauges.
            done = watch.refreshes()
            watch.wait_refreshes(done + 3)
            assert len(watch.api_calls("gauges")) == len(GAUGES)
            for route in ("summary", "timeseries", "endpoints", "slowest"):
                assert len(watch.api_calls(route)) >= done + 3

            # The period: the panel loads that window at once.
            loads = panel_loads(page)
            with page.expect_response(
                lambda r: "/gauges" in r.url and "period_hours=0.25" in r.url
            ):
                page.get_by_test_id("period-select").select_option("0.25")
            wait_panel_loads(page, loads + 1)
            cpu = last_answers(responses)["system.cpu_percent"].json()
            points = len(cpu["series"][0]["points"])
            assert 15 <= points <= 16
            assert chart(page, "system.cpu_percent").get_attribute("data-points") == str(points)

            # The URL is the view: a reload opens it and loads it.
            page.reload()
            wait_panel_loads(page, 1)
            assert page.get_by_test_id("infra-panel").get_attribute("open") is not None
            assert chart(page, "postgres.connections_total").get_attribute("data-state") == "ok"

            # Closed again: out of the URL.
            page.get_by_test_id("infra-panel").locator("summary").click()
            page.wait_for_function("() => !location.search.includes('infra=')")
            watch.assert_clean()


def test_empty_charts_a_failing_call_and_a_step_for_slow_samples(dashboard_app, browser) -> None:
    """No sampler: empty states; a gauge sampled every 5 min; one call failing."""
    app, handle = dashboard_app(sample_interval=None)
    now = time.time()
    metadata = {"host": "db-host", "pid": 1, "service": "", "scope": "cluster", "source": "app"}
    for minutes in range(0, 60, 5):  # an hour of samples 5 minutes apart
        handle.writer.record(
            "postgres",
            "connections_total",
            10 + minutes % 7,
            {**metadata, "interval": 300},
            timestamp=now - minutes * 60 - 30,
        )
    assert handle.writer.flush(10)
    with running(app) as base, watched_page(browser) as watch:
        page = watch.page
        responses: list[Any] = []
        page.on("response", lambda r: responses.append(r))
        # The host's memory answers 503, as when PostgreSQL does not answer in time.
        page.route(
            lambda url: query_of(url).get("metric_name") == "memory_percent",
            lambda route: route.fulfill(
                status=503,
                content_type="application/json",
                body='{"title": "503 Service Unavailable", "description": "PostgreSQL timed out"}',
            ),
        )
        page.goto(f"{base}{DASHBOARD}?paused=1&infra=1")
        wait_panel_loads(page, 1)
        assert page.get_by_test_id("infra-panel").get_attribute("open") is not None

        # Nothing sampled: the empty state's text, no chart.
        for gauge in ("redis.memory_used_mb", "system.cpu_percent"):
            shown = chart(page, gauge)
            assert shown.get_attribute("data-state") == "empty", gauge
            empty = shown.locator('[data-part="empty"]')
            assert empty.is_visible() and EMPTY in empty.inner_text()
            assert shown.locator(".plot").is_hidden()
        redis_hint = chart(page, "redis.memory_used_mb").locator('[data-part="empty"]')
        assert "Redis configured" in redis_hint.inner_text()

        # The failing call: that chart alone says so.
        failing = chart(page, "system.memory_percent")
        assert failing.get_attribute("data-state") == "error"
        message = failing.locator('[data-part="error"]').inner_text()
        assert message == "503 Service Unavailable: PostgreSQL timed out"
        assert page.get_by_test_id("banner").is_hidden()

        # Samples 5 min apart: asked again with a 5-min step, so every point has one.
        asked = [
            query_of(r.url)
            for r in watch.api_calls("gauges")
            if gauge_of(r.url) == "postgres.connections_total"
        ]
        assert [q.get("step_seconds") for q in asked] == [None, "300"]
        body = last_answers(responses)["postgres.connections_total"].json()
        assert body["step_seconds"] == 300 and body["series"][0]["samples"] == 12
        shown = chart(page, "postgres.connections_total")
        assert shown.get_attribute("data-state") == "ok"
        assert shown.get_attribute("data-points") == str(len(body["series"][0]["points"]))
        assert "sampled every 5 min" in shown.locator("figcaption").inner_text()
        watch.assert_clean(allowed_statuses=(503,))
