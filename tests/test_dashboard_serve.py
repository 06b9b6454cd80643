"""``mnemo-obs serve`` prints the dashboard's URL, with the token it made in the fragment."""

from __future__ import annotations

import re
import signal
from types import SimpleNamespace
from urllib.parse import urlsplit

from mnemo_obs.demo_server import _dashboard_line

from .browser import watched_page
from .test_serve import get, serving, stop

DASHBOARD_LINE = re.compile(r"^Dashboard: (http://\S+/monitoring)#token=([A-Za-z0-9_-]+)$")


def test_serve_prints_a_dashboard_url_that_opens_with_its_logs(dsn: str, browser) -> None:
    env = {"MNEMO_OBS_TOKEN": "", "MNEMO_OBS_REDIS_URL": ""}
    with serving("--dsn", dsn, env=env) as (proc, base):
        assert proc.stdout is not None
        while not (match := DASHBOARD_LINE.match(proc.stdout.readline().strip())):
            pass
        url, token = match.groups()
        assert url == f"{base}/monitoring"
        assert get(url)[0] == 200  # the page is open; the fragment never reaches the server
        assert get(f"{base}/slow?ms=1")[0] == 200
        with watched_page(browser) as watch:
            page = watch.page
            page.goto(f"{url}#token={token}")
            watch.wait_refreshes(1)
            assert page.url == url
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=log-entry] .message')]"
                ".some(e => e.textContent === 'sleeping 1 ms')"
            )
            assert all(token not in r.url for r in watch.requests)
            watch.assert_clean()
        assert urlsplit(url).fragment == ""
        code, _out, _err = stop(proc, signal.SIGTERM)
        assert code == 0


def test_with_a_token_of_its_own_the_url_has_none() -> None:
    installation = SimpleNamespace(dashboard_path="/monitoring", token_required=True)
    line = _dashboard_line("http://127.0.0.1:8001", installation, None)  # type: ignore[arg-type]
    assert line.startswith("Dashboard: http://127.0.0.1:8001/monitoring (it asks for the token")
    assert "#token=<token>" in line
