"""A real browser for the dashboard tests: headless Chromium driven by Playwright.

``playwright install`` is not needed (nor possible offline): Playwright drives
the system's Chromium (Debian's package ``chromium``), or the one that
``$MNEMO_OBS_CHROMIUM`` names. Without it the browser tests are skipped,
and with CI=true they fail.

Each page is watched: console errors, uncaught exceptions, CSP violations,
dialogs (an ``alert()`` from injected markup), failed requests, error
statuses, and any request for a host other than 127.0.0.1 (aborted).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_ENV = "MNEMO_OBS_CHROMIUM"
# Root needs --no-sandbox; the rest keep Chromium from calling Google
# (component updates, sync, field trials), which fails offline and would
# be traffic leaving 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    """``$MNEMO_OBS_CHROMIUM``, else ``chromium`` (or ``chromium-browser``) on the PATH."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


def unavailable(what: str) -> None:
    """Skip (or, under CI=true, fail) for lack of the browser."""
    message = f"{what}: the dashboard's browser tests need it"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def launched() -> Iterator[Any]:
    """A headless Chromium through Playwright; raises when either is missing."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise FileNotFoundError(
            f"no chromium on the PATH (apt-get install chromium, or set ${CHROMIUM_ENV})"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """The session's headless Chromium."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        unavailable(f"Playwright unavailable ({exc}; pip install playwright)")
    manager = launched()
    try:
        chromium = manager.__enter__()
    except Exception as exc:
        unavailable(f"Chromium unavailable ({type(exc).__name__}: {exc})")
    try:
        yield chromium
    finally:
        manager.__exit__(None, None, None)


class Watched:
    """A page, and everything that went wrong on it."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.dialogs: list[str] = []
        self.failed: list[str] = []
        self.requests: list[Any] = []
        self.statuses: list[tuple[int, str]] = []
        context.route("**/*", self._route)
        page = self.page
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("dialog", self._dialog)
        page.on("request", lambda r: self.requests.append(r))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: self.statuses.append((r.status, r.url)))

    def _route(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        # The page aborts on purpose: a refresh superseded by a newer one, a
        # log stream closed for another filter. Anything else is a failure.
        deliberate = "ERR_ABORTED" in failure and "/api/" in request.url
        if not deliberate:
            self.failed.append(f"{request.url}: {failure}")

    def api_calls(self, name: str) -> list[Any]:
        """Requests the page made to the JSON route ``name`` (``summary``, ...)."""
        return [r for r in self.requests if urlsplit(r.url).path.endswith(f"/{name}")]

    def assert_clean(self, allowed_statuses: tuple[int, ...] = ()) -> None:
        """No console error, no exception, no dialog, nothing failed, nothing outside.

        ``allowed_statuses``: error statuses the test caused on purpose (a
        401 to a wrong token); Chromium logs each as a console error too.
        """
        assert self.outside == [], f"requests left 127.0.0.1: {self.outside}"
        expected = tuple(f"status of {status} " for status in allowed_statuses)
        errors = [e for e in self.errors if not (expected and any(x in e for x in expected))]
        assert errors == [], errors
        assert self.dialogs == [], f"a dialog opened (injected script ran?): {self.dialogs}"
        assert self.failed == [], self.failed
        bad = [(s, u) for s, u in self.statuses if s >= 400 and s not in allowed_statuses]
        assert bad == [], bad

    def wait_until(self, what: str, predicate: Callable[[], object]) -> None:
        """Wait for a condition outside the page (the server's), letting the page run.

        Not ``tests.recording.wait_until``: its sleep would stall Playwright,
        which must answer the page's intercepted requests meanwhile.
        """
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.page.wait_for_timeout(20)

    def refreshes(self) -> int:
        return int(self.page.get_attribute("body", "data-refreshes") or 0)

    def wait_refreshes(self, count: int) -> None:
        """Wait until the page has drawn ``count`` refreshes."""
        self.page.wait_for_function(
            "n => Number(document.body.dataset.refreshes || 0) >= n", arg=count
        )


@contextmanager
def watched_page(browser: Any, **context_options: Any) -> Iterator[Watched]:
    """A page in a fresh context (its own storage), closed after."""
    context_options.setdefault("locale", "en-US")
    context_options.setdefault("viewport", {"width": 1280, "height": 900})
    context = browser.new_context(**context_options)
    try:
        yield Watched(context)
    finally:
        context.close()
