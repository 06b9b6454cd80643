"""Falcon resources of the dashboard: the page and its assets, with ETags and strict headers.

The page holds no data, so it is served without the token; the data comes
from the JSON routes, which the page calls with the token. Every answer
here carries a Content-Security-Policy that allows only this origin's
files (no inline script or style, no eval, no outside URL), and is cached
by ETag: the page revalidated on every load, the assets kept for good,
since their URLs change with their content.
"""

from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Iterable

import falcon

from ..errors import ConfigurationError
from .assets import CONTENT_TYPES, Asset, load_static, load_template, version

DEFAULT_PATH = "/monitoring"
SECURITY_HEADERS = {
    # default-src 'self' is what makes the page safe with names that
    # requests chose: no inline script or style, no eval, nothing from
    # elsewhere. The rest only narrows it.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The page is revalidated on every load: after an upgrade it names new assets.
PAGE_CACHE = "no-cache"
# An asset's URL holds the hash of every asset, so a URL never changes meaning.
ASSET_CACHE = "public, max-age=31536000, immutable"
_UNSAFE = set("{}?#%\\\"'<>`")


def check_path(path: object) -> str:
    """``dashboard_path``: a plain path starting with ``/``.

    Raises:
        ConfigurationError: anything else, naming the value.
    """
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or not path.isascii()
        or not path.isprintable()
        or " " in path
        or "//" in path
        or _UNSAFE & set(path)
    ):
        raise ConfigurationError(
            "dashboard_path must be a path starting with '/' (ASCII, without spaces, "
            f"'//' or any of {''.join(sorted(_UNSAFE))}), or None for no dashboard; got {path!r}"
        )
    return path


def relative(target: str, page: str) -> str:
    """``target`` relative to the page at ``page``, as a browser resolves it.

    Relative URLs keep working when the app is mounted under a prefix
    (``SCRIPT_NAME``) or behind a proxy that adds one.
    """
    folder = page.rsplit("/", 1)[0] or "/"
    rel = posixpath.relpath(target, folder)
    if target.endswith("/") and not rel.endswith("/"):
        rel += "/"
    # "./" first, so a first segment with a colon is never read as a scheme.
    return rel if rel.startswith("../") else f"./{rel}" if rel != "." else "./"


def _accepts_gzip(header: str | None) -> bool:
    for part in (header or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            quality = params.strip().lower()
            return not quality.startswith("q=") or quality[2:].strip() not in ("0", "0.0", "0.00")
    return False


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 says for GET)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def answer(req: falcon.Request, resp: falcon.Response, asset: Asset, cache: str) -> None:
    """Send ``asset`` (gzipped when the client takes it), or 304 when its ETag is current."""
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)
    resp.set_header("Cache-Control", cache)
    gzipped = asset.gzipped is not None and _accepts_gzip(req.get_header("Accept-Encoding"))
    if asset.gzipped is not None:
        resp.set_header("Vary", "Accept-Encoding")
    etag = (asset.gzip_etag if gzipped else None) or asset.etag
    resp.set_header("ETag", etag)
    if _matches(req.get_header("If-None-Match"), etag):
        resp.status = falcon.HTTP_304
        return
    resp.content_type = asset.content_type
    if gzipped:
        resp.set_header("Content-Encoding", "gzip")
    resp.data = asset.gzipped if gzipped else asset.body


class AssetResource:
    """``GET {dashboard_path}/static/<version>/<file>``: one file of the page."""

    def __init__(self, asset: Asset, cache: str = ASSET_CACHE) -> None:
        self._asset = asset
        self._cache = cache

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the file, or 304."""
        answer(req, resp, self._asset, self._cache)

    on_head = on_get


def _not_found(req: falcon.Request, resp: falcon.Response, **params: str) -> None:
    """Any other path under the assets' prefix (an old asset URL after an upgrade): 404."""
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)
    resp.set_header("Cache-Control", "no-store")
    resp.status = falcon.HTTP_404
    resp.content_type = "text/plain; charset=utf-8"
    resp.data = b"Not found: reload the dashboard's page for its current files.\n"


class Dashboard:
    """The page and its assets for one install: paths checked, files read, page rendered.

    Args:
        path: where the page is served (``dashboard_path``).
        api_prefix: the JSON routes' prefix, which the page calls.
        logs_stream: the live log stream's path, or None without live logs.
        reserved: the monitoring routes, which the page and its assets must
            not take.

    Raises:
        ConfigurationError: a bad path, or one that is a monitoring route.
    """

    def __init__(
        self,
        path: str,
        *,
        api_prefix: str,
        logs_stream: str | None,
        reserved: Iterable[str] = (),
    ) -> None:
        self.path = check_path(path)
        self.files = load_static()
        self.version = version(self.files)
        self.asset_base = f"{path.rstrip('/')}/static/{self.version}/"
        self.static_prefix = f"{path.rstrip('/')}/static/"
        clashes = sorted(set(self.routes) & {p for p in reserved if p})
        if clashes:
            raise ConfigurationError(
                f"dashboard_path {path!r} clashes with the monitoring route {clashes[0]!r}: "
                "pass another path (or None for no dashboard)"
            )
        page = load_template()
        for name, value in (
            ("assets", relative(self.asset_base, path)),
            ("api", relative(api_prefix, path)),
            ("logs", relative(logs_stream, path) if logs_stream else ""),
        ):
            page = page.replace(f"{{{{{name}}}}}", html.escape(value, quote=True))
        self.page = Asset.of(page.encode("utf-8"), CONTENT_TYPES[".html"])

    @property
    def routes(self) -> tuple[str, ...]:
        """Every path the dashboard answers: the page, then each asset."""
        return (self.path, *(f"{self.asset_base}{name}" for name in self.files))

    def add_routes(self, app: falcon.App) -> None:
        """Add the page's route, one route per asset, and a 404 for the rest of the prefix."""
        app.add_route(self.path, AssetResource(self.page, PAGE_CACHE))
        for name, asset in self.files.items():
            app.add_route(f"{self.asset_base}{name}", AssetResource(asset))
        # Routes are matched before sinks: this answers only what no route does.
        app.add_sink(_not_found, f"^{re.escape(self.static_prefix)}")
