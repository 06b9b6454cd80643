"""Names chosen by whoever sends requests show as text in the dashboard, and nothing runs."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, quote, urlsplit

from .browser import watched_page
from .dashboard_support import DASHBOARD, TOKEN, running, send, wait_for_count

SERVICE = "<img src=x onerror=alert(1)>"
OTHER_SERVICE = "</select><script>window.pwned = 'service'</script>"
ENDPOINT = "<img src=x onerror=alert(2)><b>/bold</b>"
MESSAGE = "<script>window.pwned = 'log'</script><img src=x onerror=alert(3)> & ok"


def test_hostile_services_endpoints_and_log_messages_show_as_text(dashboard_app, browser) -> None:
    app, handle = dashboard_app(service=SERVICE)
    with running(app) as base:
        send(base, ["/fast"] * 2)
        send(base, [f"/say?text={quote(MESSAGE)}"])
        # A row as another tool (or a WSGI app's endpoint_of) could write it.
        handle.writer.record(
            "api",
            ENDPOINT,
            12.5,
            {
                "method": "GET",
                "status_code": 500,
                "trace_id": str(uuid.uuid4()),
                "service": OTHER_SERVICE,
            },
        )
        wait_for_count(base, 4)
        with watched_page(browser) as watch:
            page = watch.page
            page.goto(f"{base}{DASHBOARD}?paused=1#token={TOKEN}")
            watch.wait_refreshes(1)

            names = page.get_by_test_id("endpoint-row").locator(".endpoint").all_inner_texts()
            assert ENDPOINT in names
            services = page.get_by_test_id("endpoint-row").locator(".service").all_inner_texts()
            assert set(services) == {SERVICE, OTHER_SERVICE}
            slow = page.get_by_test_id("slow-request").locator(".endpoint").all_inner_texts()
            assert ENDPOINT in slow

            # Several services: the selector shows, with the names as typed.
            assert page.get_by_test_id("service-control").is_visible()
            options = page.get_by_test_id("service-select").locator("option").all_inner_texts()
            assert options == ["all services", OTHER_SERVICE, SERVICE]
            page.get_by_test_id("service-select").select_option(label=SERVICE)
            watch.wait_refreshes(2)
            assert page.get_by_test_id("tile-request-count").locator(".value").inner_text() == "3"
            assert parse_qs(urlsplit(page.url).query)["service"] == [SERVICE]

            # The endpoint filter with a hostile name.
            page.get_by_test_id("service-select").select_option(label="all services")
            watch.wait_refreshes(3)
            page.get_by_test_id("endpoint-row").filter(has_text="/bold").click()
            watch.wait_refreshes(4)
            assert page.get_by_test_id("endpoint-filter-name").inner_text() == ENDPOINT

            page.wait_for_function(
                "m => [...document.querySelectorAll('[data-testid=log-entry] .message')]"
                ".some(e => e.textContent === m)",
                arg=MESSAGE,
            )
            assert page.locator("img").count() == 0
            assert page.locator("b").count() == 0
            assert page.locator("script:not([src])").count() == 0
            assert page.evaluate("window.pwned") is None
            watch.assert_clean()
            assert watch.dialogs == []
