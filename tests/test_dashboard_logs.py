"""The dashboard's live log panel in a real browser: tail, filters, resume, back-off, refusals."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from .browser import watched_page
from .dashboard_support import DASHBOARD, PREFIX, TOKEN, TRAFFIC, running, send, wait_for_count
from .logs_support import SSEClient

STREAM = f"{PREFIX}/logs/stream"


def entries(page: Any) -> Any:
    return page.get_by_test_id("log-entry")


def wait_status(page: Any, start: str) -> None:
    page.wait_for_function(
        "s => document.querySelector('[data-testid=log-status]').textContent.startsWith(s)",
        arg=start,
    )


def wait_entries(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=log-entry]').length >= n", arg=count
    )


def streams(watch: Any) -> list[Any]:
    return [r for r in watch.requests if urlsplit(r.url).path == STREAM]


def test_the_tail_its_level_filter_and_a_trace_id_click(dashboard_app, browser) -> None:
    app, _handle = dashboard_app()
    with running(app) as base:
        send(base, TRAFFIC)  # 4 slow requests log 2 records each, 3 failing ones 1
        wait_for_count(base, len(TRAFFIC))
        options = {"permissions": ["clipboard-read", "clipboard-write"]}
        with watched_page(browser, **options) as watch:
            page = watch.page
            page.goto(f"{base}{DASHBOARD}?paused=1#token={TOKEN}")
            wait_status(page, "Live: this process")
            wait_entries(page, 11)  # the replay of what was logged before
            assert entries(page).count() == 11
            send(base, ["/slow?ms=1"])  # live records
            wait_entries(page, 13)
            assert "slow request done after 1 ms" in entries(page).last.inner_text()

            page.get_by_test_id("log-level").select_option("WARNING")
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=log-entry]')].length === 8"
            )
            levels = {e.get_attribute("data-level") for e in entries(page).all()}
            assert levels == {"WARNING", "ERROR"}
            assert parse_qs(urlsplit(page.url).query)["level"] == ["WARNING"]
            page.get_by_test_id("log-level").select_option("")

            # A slow request's trace id: copied, and the tail filtered to it,
            # with what that request logged already.
            watch.wait_refreshes(1)
            slowest = page.get_by_test_id("slow-request").first
            trace_id = slowest.get_by_test_id("trace-id").inner_text()
            assert slowest.locator(".endpoint").inner_text() == "/slow"
            slowest.get_by_test_id("trace-id").click()
            page.get_by_test_id("toast").wait_for(state="visible")
            assert page.evaluate("navigator.clipboard.readText()") == trace_id
            assert page.get_by_test_id("log-trace-filter-id").inner_text() == trace_id
            page.wait_for_function(
                "id => { const e = [...document.querySelectorAll('[data-testid=log-entry]')];"
                " return e.length === 2 && e.every(x => x.dataset.traceId === id); }",
                arg=trace_id,
            )
            texts = entries(page).locator(".message").all_inner_texts()
            assert texts[0].startswith("slow request: sleeping") and "done after" in texts[1]
            last = streams(watch)[-1]
            assert parse_qs(urlsplit(last.url).query)["trace_id"] == [trace_id]
            assert last.headers["authorization"] == f"Bearer {TOKEN}"
            assert parse_qs(urlsplit(page.url).query)["trace"] == [trace_id]

            page.get_by_test_id("log-trace-clear").click()
            wait_entries(page, 13)
            assert all(TOKEN not in r.url for r in watch.requests)
            # Streams closed for another filter hold their slot until the server
            # notices (a heartbeat or two): quick changes may meet the cap of 2
            # and retry, by design.
            watch.assert_clean(allowed_statuses=(503,))


def test_the_tail_resumes_with_last_event_id_when_a_stream_ends(dashboard_app, browser) -> None:
    app, _handle = dashboard_app(log_max_stream_seconds=1)
    with running(app) as base, watched_page(browser) as watch:
        page = watch.page
        page.goto(f"{base}{DASHBOARD}?paused=1#token={TOKEN}")
        wait_status(page, "Live")
        sent = []
        ended = (
            "() => performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/logs/stream')).length"
        )
        for i in range(4):
            done = page.evaluate(ended)
            text = f"message {i}"
            send(base, [f"/say?text={text.replace(' ', '+')}"])
            sent.append(text)
            wait_entries(page, i + 1)
            # The next one is logged once the stream that brought this one has
            # ended (its lifetime): it reaches the page through the resume.
            page.wait_for_function(f"() => ({ended})() > {done}")
        messages = entries(page).locator(".message").all_inner_texts()
        assert messages == sent  # each once, in order: nothing lost, nothing twice
        resumed = [r for r in streams(watch)[1:] if r.headers.get("last-event-id")]
        assert len(resumed) >= 3
        watch.assert_clean()


def test_over_the_stream_cap_the_panel_backs_off_and_says_so(dashboard_app, browser) -> None:
    # A lifetime long enough that the held stream outlives the page's first try.
    app, _handle = dashboard_app(log_max_streams=1, log_max_stream_seconds=15)
    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with watched_page(browser) as watch:
            page = watch.page
            with SSEClient(port, STREAM, {"Authorization": f"Bearer {TOKEN}"}) as holder:
                holder.events("hello")
                page.goto(f"{base}{DASHBOARD}?paused=1#token={TOKEN}")
                wait_status(page, "Too many log streams")
                status = page.get_by_test_id("log-status")
                assert "Trying again in" in status.inner_text()
                assert status.get_attribute("data-state") == "error"
            wait_status(page, "Live")
            refused = [s for s, url in watch.statuses if s == 503]
            assert refused and all(s == 503 for s in refused)
            watch.assert_clean(allowed_statuses=(503,))


def test_without_a_token_configured_the_panel_says_how_to_set_one(dashboard_app, browser) -> None:
    app, _handle = dashboard_app(log_token=None)
    with running(app) as base, watched_page(browser) as watch:
        page = watch.page
        page.goto(f"{base}{DASHBOARD}?paused=1")
        watch.wait_refreshes(1)  # the summary is open: the data shows
        status = page.get_by_test_id("log-status")
        wait_status(page, "The live logs always need a token")
        assert "log_token=" in status.inner_text()
        assert streams(watch) == []  # not asked: it could only refuse
        page.get_by_test_id("log-token-button").click()
        page.get_by_test_id("token-input").fill("some-token")
        page.get_by_test_id("token-submit").click()
        wait_status(page, "Live logs need a token: ")
        assert "log_token=" in status.inner_text() and "none is set" in status.inner_text()
        watch.assert_clean(allowed_statuses=(403,))


def test_a_browser_eventsource_receives_the_stream_and_resumes(dashboard_app, browser) -> None:
    """EventSource cannot send the token itself: the browser adds it to every request here."""
    app, _handle = dashboard_app(log_max_stream_seconds=1)
    with running(app) as base, watched_page(browser) as watch:
        page = watch.page
        page.goto(f"{base}{DASHBOARD}?paused=1")
        page.set_extra_http_headers({"Authorization": f"Bearer {TOKEN}"})
        page.evaluate(
            """url => {
                    window.received = [];
                    window.resumes = [];
                    const source = new EventSource(url);
                    source.addEventListener('hello', e => window.resumes.push(
                        JSON.parse(e.data).resume));
                    source.addEventListener('log', e => window.received.push(
                        [e.lastEventId, JSON.parse(e.data).message]));
                    window.source = source;
                }""",
            f"{base}{STREAM}?tail=0",
        )
        page.wait_for_function("() => window.resumes.length >= 1")
        send(base, ["/say?text=first"])
        page.wait_for_function("() => window.received.length === 1")
        # The lifetime ends; EventSource reconnects with Last-Event-ID, twice.
        page.wait_for_function("() => window.resumes.length >= 3")
        send(base, ["/say?text=second"])
        page.wait_for_function("() => window.received.length === 2")
        received = page.evaluate("window.source.close(), window.received")
        resumes = page.evaluate("window.resumes")
        assert [message for _id, message in received] == ["first", "second"]
        assert resumes[0] is None and resumes[1] == received[0][0]
        watch.assert_clean()


HIDE = """hidden => {
    Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});
    document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_a_hidden_tab_closes_its_stream_and_stops_polling(dashboard_app, browser) -> None:
    app, handle = dashboard_app()
    slots = handle.logs.slots
    with running(app) as base, watched_page(browser) as watch:
        page = watch.page
        page.goto(f"{base}{DASHBOARD}?refresh=1#token={TOKEN}")
        wait_status(page, "Live")
        assert slots.open == 1
        page.evaluate(HIDE, True)
        # The server notices the closed stream at a heartbeat: its thread is free.
        watch.wait_until("the hidden tab's stream to end", lambda: slots.open == 0)
        asked = len(watch.api_calls("summary"))
        page.wait_for_timeout(2500)  # over two refresh intervals
        assert len(watch.api_calls("summary")) == asked
        page.evaluate(HIDE, False)
        watch.wait_until("the stream to open again", lambda: slots.open == 1)
        watch.wait_refreshes(watch.refreshes() + 1)
        assert len(watch.api_calls("summary")) > asked
        assert len(streams(watch)) == 2
        watch.assert_clean()
