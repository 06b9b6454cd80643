"""Serving the dashboard: dashboard_path, headers, ETags, gzip, and what ships in the wheel."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import falcon
import falcon.testing
import pytest

from mnemo_obs.dashboard import SECURITY_HEADERS, Dashboard
from mnemo_obs.dashboard.assets import package_dir
from mnemo_obs.dashboard.resources import relative
from mnemo_obs.errors import ConfigurationError

from .dashboard_support import DASHBOARD, PREFIX, make_app

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "mnemo_obs" / "dashboard"
URL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}", re.I)


def asset_paths(page: str) -> list[str]:
    """The asset URLs the page names, made absolute for a page at /monitoring."""
    names = re.findall(r'(?:href|src)="\./([^"]+)"', page)
    return [f"/{name}" for name in names]


def client_for(dashboard_app, **kwargs) -> tuple[falcon.testing.TestClient, object]:
    app, handle = dashboard_app(**kwargs)
    return falcon.testing.TestClient(app), handle


def test_the_page_and_its_assets_carry_the_security_headers_and_etags(dashboard_app) -> None:
    client, _handle = client_for(dashboard_app, token="s3cret")
    page = client.simulate_get(DASHBOARD)  # no token: the page holds no data
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert page.headers["content-security-policy"].startswith("default-src 'self';")
    assert client.simulate_get(f"{PREFIX}/summary").status_code == 401

    again = client.simulate_get(DASHBOARD, headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == page.headers["etag"]
    assert again.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]

    paths = asset_paths(page.text)
    assert any(p.endswith("/js/main.js") for p in paths)
    assert any(p.endswith("/vendor/uplot/uPlot.min.css") for p in paths)
    for path in paths:
        asset = client.simulate_get(path)
        assert asset.status_code == 200, path
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        for name, value in SECURITY_HEADERS.items():
            assert asset.headers[name] == value
        weak = f"W/{asset.headers['etag']}"
        cached = client.simulate_get(path, headers={"If-None-Match": f'"other", {weak}'})
        assert cached.status_code == 304, path
    main = next(p for p in paths if p.endswith("/js/main.js"))
    assert client.simulate_get(main).headers["content-type"] == "text/javascript; charset=utf-8"
    assert client.simulate_head(main).status_code == 200
    missing = client.simulate_get(main.replace("main.js", "nope.js"))
    old = client.simulate_get(f"{DASHBOARD}/static/0123456789ab/js/main.js")  # an older version
    for answer in (missing, old):
        assert answer.status_code == 404
        assert answer.headers["content-security-policy"].startswith("default-src 'self'")
        assert answer.headers["cache-control"] == "no-store"


def test_assets_are_gzipped_for_clients_that_take_it(dashboard_app) -> None:
    client, _handle = client_for(dashboard_app)
    uplot = next(p for p in asset_paths(client.simulate_get(DASHBOARD).text) if "uPlot" in p)
    uplot = uplot.replace("uPlot.min.css", "uPlot.esm.js")
    plain = client.simulate_get(uplot)
    packed = client.simulate_get(uplot, headers={"Accept-Encoding": "br, gzip;q=0.8"})
    refused = client.simulate_get(uplot, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in plain.headers and "content-encoding" not in refused.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(packed.content) == plain.content
    assert len(packed.content) < len(plain.content) / 3
    assert packed.headers["etag"] != plain.headers["etag"]  # two representations
    again = client.simulate_get(
        uplot, headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["etag"]}
    )
    assert again.status_code == 304


def test_dashboard_requests_are_not_recorded(dashboard_app) -> None:
    client, handle = client_for(dashboard_app)
    page = client.simulate_get(DASHBOARD)
    for path in asset_paths(page.text):
        client.simulate_get(path)
    client.simulate_get("/fast")
    assert handle.writer.flush(10)
    assert handle.writer.stats()["enqueued"] == 1
    assert page.headers["x-trace-id"]  # a trace id all the same, like every response


def test_dashboard_path_none_serves_no_page(dashboard_app) -> None:
    client, handle = client_for(dashboard_app, dashboard_path=None)
    assert handle.dashboard_path is None
    assert client.simulate_get(DASHBOARD).status_code == 404


def test_another_dashboard_path(dashboard_app) -> None:
    client, handle = client_for(dashboard_app, dashboard_path="/ops/dash")
    assert handle.dashboard_path == "/ops/dash"
    page = client.simulate_get("/ops/dash")
    assert page.status_code == 200
    assert 'data-api="../api/monitoring/advanced"' in page.text
    assert 'data-logs="../api/monitoring/advanced/logs/stream"' in page.text
    main = re.search(r'src="\./(dash/static/[0-9a-f]+/js/main\.js)"', page.text)
    assert main is not None
    assert client.simulate_get(f"/ops/{main.group(1)}").status_code == 200
    assert client.simulate_get(DASHBOARD).status_code == 404


def test_without_live_logs_the_page_says_so(dashboard_app) -> None:
    client, _handle = client_for(dashboard_app, logs=False)
    assert 'data-logs=""' in client.simulate_get(DASHBOARD).text


@pytest.mark.parametrize(
    "path", ["monitoring", "", "/a b", "/a?b", "/a#b", "/a{b}", "/a//b", '/a"b', "/é", 42]
)
def test_bad_dashboard_paths_are_refused_naming_the_value(dashboard_app, path) -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match="dashboard_path") as info:
        dashboard_app(app, dashboard_path=path)
    assert repr(path) in str(info.value)
    assert app._unprepared_middleware == []  # nothing added


@pytest.mark.parametrize(
    "path", [f"{PREFIX}/summary", f"{PREFIX}/endpoints", f"{PREFIX}/logs/stream", "/health"]
)
def test_a_dashboard_path_that_is_a_monitoring_route_is_refused(dashboard_app, path) -> None:
    with pytest.raises(ConfigurationError, match="clashes with the monitoring route"):
        dashboard_app(dashboard_path=path)


def test_a_dashboard_path_the_app_already_has_is_refused(dashboard_app) -> None:
    app = make_app()
    app.add_route("/monitoring", make_app)  # any resource: the path is taken
    with pytest.raises(ConfigurationError, match="already has a route at '/monitoring'"):
        dashboard_app(app)
    # With the logs off, their paths are free for the dashboard.
    _app, handle = dashboard_app(logs=False, dashboard_path=f"{PREFIX}/logs")
    assert handle.dashboard_path == f"{PREFIX}/logs"


@pytest.mark.parametrize(
    ("target", "page", "expected"),
    [
        ("/monitoring/static/v/", "/monitoring", "./monitoring/static/v/"),
        ("/api/x", "/monitoring", "./api/x"),
        ("/api/x", "/ops/dash", "../api/x"),
        ("/ops/dash/static/v/", "/ops/dash", "./dash/static/v/"),
        ("/m/static/v/", "/m/", "./static/v/"),
        ("/static/v/", "/", "./static/v/"),
        ("/a:b/x", "/", "./a:b/x"),
    ],
)
def test_urls_are_relative_to_the_page(target: str, page: str, expected: str) -> None:
    assert relative(target, page) == expected


class _Markup(HTMLParser):
    """Every tag and attribute of a page, to look for inline script and style."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _value in attrs}
        if tag == "style" or "style" in names:
            self.problems.append(f"inline style in <{tag}>")
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        self.problems += [f"{name} on <{tag}>" for name in names if name.startswith("on")]
        for name, value in attrs:
            if value and (value.startswith("javascript:") or URL.search(value)):
                self.problems.append(f"{name}={value!r} on <{tag}>")


def test_the_page_has_no_inline_script_or_style_and_no_outside_url() -> None:
    page = (SOURCE / "index.html").read_text(encoding="utf-8")
    markup = _Markup()
    markup.feed(page)
    assert markup.problems == []
    assert not URL.search(page)


def _without_comments(js: str) -> str:
    js = re.sub(r"/\*.*?\*/", "", js, flags=re.S)
    return re.sub(r"(^|\s)//[^\n]*", r"\1", js)


def test_the_scripts_and_styles_load_nothing_from_outside_and_write_no_html() -> None:
    static = SOURCE / "static"
    ours = sorted((static / "js").glob("*.js"))
    assert len(ours) >= 10
    for path in ours:
        code = path.read_text(encoding="utf-8")
        assert not URL.search(code), path.name
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, (path.name, sink)
        assert "new Function" not in code and ".style." not in code, path.name
        assert 'setAttribute("style"' not in code, path.name
    for path in static.rglob("*.css"):
        css = path.read_text(encoding="utf-8")
        assert "@import" not in css and not re.search(r"url\(", css), path.name
    # uPlot's only URLs are in its comments (credits); it writes no HTML either.
    uplot = (static / "vendor" / "uplot" / "uPlot.esm.js").read_text(encoding="utf-8")
    code = _without_comments(uplot)
    assert not URL.search(code)
    assert "innerHTML" not in code and "eval(" not in code and "new Function" not in code


def test_the_vendored_uplot_has_its_license_and_version() -> None:
    vendor = SOURCE / "static" / "vendor" / "uplot"
    assert "MIT License" in (vendor / "LICENSE").read_text(encoding="utf-8")
    version = re.search(r"uPlot (\d+\.\d+\.\d+)", (vendor / "VERSION").read_text())
    banner = (vendor / "uPlot.esm.js").read_text(encoding="utf-8")[:400]
    assert version is not None and f"(v{version.group(1)})" in banner


def test_every_asset_is_read_from_the_package() -> None:
    dashboard = Dashboard(DASHBOARD, api_prefix=PREFIX, logs_stream=None)
    on_disk = {
        p.relative_to(SOURCE / "static").as_posix()
        for p in (SOURCE / "static").rglob("*")
        if p.is_file() and p.suffix in (".js", ".css", ".png")
    }
    assert set(dashboard.files) == on_disk
    assert (package_dir() / "index.html").is_file()


def test_the_wheel_ships_the_dashboard(tmp_path: Path) -> None:
    """Built from a copy of the sources (the build writes build/ and egg-info beside them)."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "setup.py", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(
        ROOT / "mnemo_obs",
        source / "mnemo_obs",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    offline = ("--no-deps", "--no-build-isolation", "--no-index", "-q")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("mnemo_obs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        f"mnemo_obs/dashboard/{p.relative_to(SOURCE).as_posix()}"
        for p in SOURCE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert expected - names == set()
    assert "mnemo_obs/dashboard/static/vendor/uplot/LICENSE" in names
