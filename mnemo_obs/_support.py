"""Small parts of the writer: a lock-free counter, option checks, process-wide hooks."""

from __future__ import annotations

import atexit
import itertools
import math
import numbers
import os
import threading
import time
import weakref
from datetime import datetime, timezone
from typing import Any

from .errors import ConfigurationError


class Counter:
    """A counter that any thread may bump without a lock.

    ``next()`` on an ``itertools.count`` is one C call, atomic under the
    GIL, so concurrent bumps are never lost; reading takes a number too,
    and subtracts the reads made so far.
    """

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0
        self._lock = threading.Lock()
        self.bump = self._count.__next__

    def value(self) -> int:
        with self._lock:
            value = next(self._count) - self._reads
            self._reads += 1
        return value


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
    return value


def positive_float(name: str, value: object, *, zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not zero):  # type: ignore[arg-type]
        bound = ">= 0" if zero else "> 0"
        raise ConfigurationError(f"{name} must be a finite number {bound}, not {value!r}")
    return float(value)  # type: ignore[arg-type]


SERVICE_ENV = "MNEMO_OBS_SERVICE"
SERVICE_MAX = 100


def resolve_service(service: str | None) -> str:
    """``service``, else ``$MNEMO_OBS_SERVICE``, else "" (no service); checked.

    Raises:
        ConfigurationError: not a str, longer than 100 characters, or with
            control characters.
    """
    if service is None:
        service = os.environ.get(SERVICE_ENV, "")
    if not isinstance(service, str) or len(service) > SERVICE_MAX or not service.isprintable():
        raise ConfigurationError(
            f"service must be a printable str of at most {SERVICE_MAX} characters, not {service!r}"
        )
    return service


def finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat()


# -- process-wide hooks, installed with the first started writer ------------

LIVE: weakref.WeakSet[Any] = weakref.WeakSet()  # writers that have started
INSTALLATIONS: weakref.WeakSet[Any] = weakref.WeakSet()  # what install() set up
_hooks_installed = False
_hooks_lock = threading.Lock()


def install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    with _hooks_lock:
        if not _hooks_installed:
            atexit.register(_close_all)
            os.register_at_fork(after_in_child=_reset_all_after_fork)
            _hooks_installed = True


def _close_all() -> None:
    for writer in list(LIVE):
        writer.close()


def close_everything(timeout: float) -> bool:
    """Close every installation and writer of this process within one ``timeout``.

    Returns True when every queued row was written.
    """
    deadline = time.monotonic() + timeout
    flushed = True
    for closeable in [*INSTALLATIONS, *LIVE]:  # an installation closes its writer first
        flushed = closeable.close(max(0.0, deadline - time.monotonic())) and flushed
    return flushed


def _reset_all_after_fork() -> None:
    # The parent's threads do not exist here and its locks may be held by
    # them. Its connections are left alone: psycopg2 does not close a
    # connection in a process other than the one that opened it, so
    # dropping them cannot end the parent's session.
    # A writer closed before the fork stays closed in the child.
    for writer in list(LIVE):
        writer._reset(closed=writer._state == "closed")
