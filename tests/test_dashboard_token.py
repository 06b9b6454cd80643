"""The dashboard's token flow in a real browser: asked for, refused, accepted, kept for the tab."""

from __future__ import annotations

from .browser import watched_page
from .dashboard_support import AUTH, DASHBOARD, TOKEN, TRAFFIC, running, send, wait_for_count

STORED = "sessionStorage.getItem('mnemo_obs.token')"


def test_the_page_asks_refuses_a_wrong_token_then_takes_the_right_one(
    dashboard_app, browser
) -> None:
    app, _handle = dashboard_app(token=TOKEN)
    with running(app) as base:
        send(base, TRAFFIC[:5])
        wait_for_count(base, 5, AUTH)
        with watched_page(browser) as watch:
            page = watch.page
            page.goto(f"{base}{DASHBOARD}?refresh=1")
            panel = page.get_by_test_id("token-panel")
            panel.wait_for(state="visible")
            message = page.get_by_test_id("token-message")
            assert message.inner_text() == "This dashboard's data needs the monitoring token."
            assert panel.get_attribute("data-state") == "ask"
            log_status = page.get_by_test_id("log-status").inner_text()
            assert log_status.startswith("The live logs always need a token")

            def refused() -> int:
                return sum(1 for status, _url in watch.statuses if status == 401)

            first = refused()
            assert first == 4  # summary, timeseries, endpoints, slowest; once
            page.wait_for_timeout(2500)  # over two refresh intervals: no retry on its own
            assert refused() == first

            page.get_by_test_id("token-input").fill("not-the-token")
            page.get_by_test_id("token-submit").click()
            page.wait_for_function(
                "() => document.querySelector('[data-testid=token-panel]').dataset.state"
                " === 'error'"
            )
            assert message.inner_text().startswith("The server refused this token (401).")
            assert page.evaluate(STORED) is None  # a refused token is not kept
            page.wait_for_function(
                "() => document.querySelector('[data-testid=log-status]').textContent"
                ".includes('refused this token')"
            )
            after_wrong = refused()
            page.wait_for_timeout(2500)
            assert refused() == after_wrong  # no loop of 401s

            page.get_by_test_id("token-input").fill(TOKEN)
            page.get_by_test_id("token-submit").click()
            panel.wait_for(state="hidden")
            count = page.get_by_test_id("tile-request-count").locator(".value")
            page.wait_for_function(
                "() => document.querySelector('[data-testid=tile-request-count] .value')"
                ".textContent === '5'"
            )
            assert count.inner_text() == "5"
            assert page.evaluate(STORED) == TOKEN
            page.wait_for_function(
                "() => document.querySelector('[data-testid=log-status]').textContent"
                ".startsWith('Live')"
            )

            # Kept for the tab: a reload does not ask again.
            page.reload()
            watch.wait_refreshes(1)
            assert panel.is_hidden()
            assert all(TOKEN not in request.url for request in watch.requests)
            watch.assert_clean(allowed_statuses=(401,))


def test_a_token_in_the_fragment_is_kept_and_taken_out_of_the_address_bar(
    dashboard_app, browser
) -> None:
    app, _handle = dashboard_app(token=TOKEN)
    with running(app) as base:
        send(base, TRAFFIC[:3])
        wait_for_count(base, 3, AUTH)
        with watched_page(browser) as watch:
            page = watch.page
            page.goto(f"{base}{DASHBOARD}?period=6#token={TOKEN}")
            watch.wait_refreshes(1)
            assert page.url == f"{base}{DASHBOARD}?period=6"
            assert page.evaluate("location.hash") == ""
            assert page.evaluate(STORED) == TOKEN
            assert page.get_by_test_id("token-panel").is_hidden()
            assert page.get_by_test_id("tile-request-count").locator(".value").inner_text() == "3"
            summary = watch.api_calls("summary")[0]
            assert summary.headers["authorization"] == f"Bearer {TOKEN}"
            assert "period_hours=6" in summary.url

            # Forgetting it: the next refresh asks again.
            page.get_by_test_id("token-button").click()
            page.get_by_test_id("token-forget").click()
            page.get_by_test_id("token-panel").wait_for(state="visible")
            page.wait_for_function(
                "() => document.querySelector('[data-testid=token-message]').textContent"
                ' === "This dashboard\'s data needs the monitoring token."'
            )
            assert page.evaluate(STORED) is None
            assert all(TOKEN not in request.url for request in watch.requests)
            watch.assert_clean(allowed_statuses=(401,))
