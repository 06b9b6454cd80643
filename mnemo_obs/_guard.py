"""Shared by the two middlewares: the skip list, and counting our own failures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._copy import UNMATCHED as UNMATCHED
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .writer import MetricsWriter

log = logging.getLogger("mnemo_obs.middleware")

EXPOSE_HEADER = "Access-Control-Expose-Headers"
# Methods are stored cut to this: waitress accepts any token as a method, up
# to its 256 KiB request line, and every queued row (and the writer's cache
# of names) would hold it whole.
METHOD_MAX = 32


def paths(name: str, values: Iterable[str]) -> tuple[str, ...]:
    """Validate a skip list: strings that start with ``/``."""
    if isinstance(values, str):
        raise ConfigurationError(
            f"{name} must be a list of paths, such as [{values!r}], not the string {values!r}"
        )
    try:
        result = tuple(values)
    except TypeError:
        raise ConfigurationError(
            f"{name} must be a list of paths, such as ['/health'], not {values!r}"
        ) from None
    for value in result:
        if not isinstance(value, str) or not value.startswith("/"):
            raise ConfigurationError(f"{name}: {value!r} is not a path starting with '/'")
    return result


def expose(existing: str | None) -> str:
    """``Access-Control-Expose-Headers`` with X-Trace-ID added to what the app set."""
    if not existing:
        return "X-Trace-ID"
    if "x-trace-id" in existing.lower():
        return existing
    return f"{existing}, X-Trace-ID"


class FailureCounter:
    """Our own exceptions on the request path: counted by kind, each kind logged once.

    The request never sees them. This runs only when something went wrong,
    so it may take a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def __call__(self, where: str, exc: BaseException) -> None:
        kind = f"{where}: {type(exc).__name__}"
        with self._lock:
            first = kind not in self._counts
            self._counts[kind] = self._counts.get(kind, 0) + 1
        if first:
            log.error("mnemo_obs %s failed (logged once, then counted)", where, exc_info=exc)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class Recorder:
    """What both middlewares share: the writer's hand-off, the skip list, the failure count."""

    def __init__(
        self, writer: MetricsWriter, skip_paths: Iterable[str], skip_prefixes: Iterable[str]
    ) -> None:
        submit = getattr(writer, "submit_request", None)
        if not callable(submit):
            raise TypeError(f"writer must be a MetricsWriter, not {writer!r}")
        self.writer = writer
        self._submit = submit
        self._skip_paths = frozenset(paths("skip_paths", skip_paths))
        self._skip_prefixes = paths("skip_prefixes", skip_prefixes)
        self._failed = FailureCounter()

    @property
    def failures(self) -> dict[str, int]:
        """Our own exceptions caught on the request path, counted by kind."""
        return self._failed.counts()
