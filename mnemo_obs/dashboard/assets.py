"""The dashboard's files: read once from the package, each with its ETag and a gzipped copy.

The files ship inside the package (``static/`` and ``index.html``), read
through :mod:`importlib.resources` so a zipped install works too. They are
read at :func:`mnemo_obs.install` time and kept in memory: about 200 kB,
which spares a disk read (and a stat) per request.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# Served by extension; anything else in static/ (the vendored library's
# LICENSE and VERSION) ships in the package but is not served.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
}
# Smaller bodies gain too little from gzip to be worth a second copy.
GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class Asset:
    """One file as served: its bytes, its type, and the gzip variant if that is smaller."""

    body: bytes
    content_type: str
    etag: str
    gzipped: bytes | None = None
    gzip_etag: str | None = None

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        digest = hashlib.sha256(body).hexdigest()[:20]
        gzipped = None
        if len(body) >= GZIP_MIN_BYTES:
            # mtime=0: the same bytes (and so the same ETag) on every start.
            packed = gzip.compress(body, compresslevel=9, mtime=0)
            gzipped = packed if len(packed) < len(body) else None
        return cls(
            body=body,
            content_type=content_type,
            etag=f'"{digest}"',
            gzipped=gzipped,
            gzip_etag=f'"{digest}-gz"' if gzipped is not None else None,
        )


def package_dir() -> Traversable:
    """The ``mnemo_obs.dashboard`` package's files."""
    return resources.files("mnemo_obs.dashboard")


def _walk(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.extend(_walk(entry, f"{name}/"))
        else:
            found.append((name, entry))
    return found


def content_type(name: str) -> str | None:
    """The Content-Type served for a file name, or None when it is not served."""
    dot = name.rfind(".")
    return CONTENT_TYPES.get(name[dot:]) if dot > 0 else None


def load_static() -> dict[str, Asset]:
    """Every served file under ``static/``, by its path there (``js/main.js``)."""
    files = {}
    for name, entry in _walk(package_dir() / "static"):
        kind = content_type(name)
        if kind is not None and not name.endswith(".html"):
            files[name] = Asset.of(entry.read_bytes(), kind)
    return files


def load_template() -> str:
    """The page's HTML, with ``{{name}}`` placeholders filled by the resources."""
    return (package_dir() / "index.html").read_text(encoding="utf-8")


def version(files: dict[str, Asset]) -> str:
    """A short hash of every served file, in the assets' URLs: they can be cached for good."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].etag.encode())
    return digest.hexdigest()[:12]
