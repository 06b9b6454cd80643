"""The read views of the MetricsCollector: per endpoint, over time, the slowest requests.

A mixin, so ``summary.py`` stays the summary: each view checks its
arguments, then runs its read on a reader thread of the collector (the
replica's while there is one it may read), within its timeout, cached like
the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..rollups import reads
from ..rollups.reads import normalise_hours
from . import breakdown
from ._base import check_positive
from ._cache import SingleFlightCache
from ._routing import Router
from .api import MAX_PERIOD_HOURS

if TYPE_CHECKING:
    from ..writer import MetricsWriter


class Views:
    """Endpoints, time series and slowest requests, over the collector's connections."""

    FLUSH_WAIT: float
    _timeout: float
    _writer: MetricsWriter | None
    _router: Router
    _cache: SingleFlightCache[dict[str, Any]]

    def endpoints(
        self, period_hours: float = 1.0, *, service: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """Latency, traffic and errors per endpoint, where the time goes first.

        See :func:`~mnemo_obs.collectors.breakdown.endpoints`; ``limit`` is
        at most 1,000.

        Raises:
            ValueError: a bad argument, naming it.
            DatabaseError: PostgreSQL failed, or did not answer within ``timeout``.
        """
        hours = hours_of(period_hours)
        check_service(service)
        _check_limit(limit, breakdown.MAX_ENDPOINTS)
        return self._view(
            ("endpoints", hours, service, limit),
            hours,
            lambda cur, window: breakdown.endpoints(cur, window, service=service, limit=limit),
        )

    def timeseries(
        self,
        period_hours: float = 1.0,
        *,
        step_seconds: int | None = None,
        endpoint: str | None = None,
        service: str | None = None,
    ) -> dict[str, Any]:
        """Requests, errors and percentiles per step over the window, with no holes.

        ``step_seconds`` is a multiple of 60 (chosen for 60 to 120 points
        when None), at most 1,440 points, and under 3600 only for windows up
        to a week (minute rollups are kept 8 days).

        Raises:
            ValueError: a bad argument, naming it.
            DatabaseError: PostgreSQL failed, or did not answer within ``timeout``.
        """
        hours = hours_of(period_hours)
        check_service(service)
        _check_endpoint(endpoint)
        if step_seconds is not None:
            _check_step(step_seconds, hours)
        return self._view(
            ("timeseries", hours, step_seconds, endpoint, service),
            hours,
            lambda cur, window: breakdown.timeseries(
                cur, window, step=step_seconds, endpoint=endpoint, service=service
            ),
        )

    def slowest(
        self,
        period_hours: float = 1.0,
        *,
        limit: int = 20,
        endpoint: str | None = None,
        service: str | None = None,
    ) -> dict[str, Any]:
        """The slowest requests of the window with their trace ids; ``limit`` at most 100.

        Raises:
            ValueError: a bad argument, naming it.
            DatabaseError: PostgreSQL failed, or did not answer within ``timeout``.
        """
        hours = hours_of(period_hours)
        check_service(service)
        _check_endpoint(endpoint)
        _check_limit(limit, breakdown.MAX_SLOWEST)
        return self._view(
            ("slowest", hours, limit, endpoint, service),
            hours,
            lambda cur, window: breakdown.slowest(
                cur, window, limit=limit, endpoint=endpoint, service=service
            ),
        )

    def _view(
        self, key: tuple[Any, ...], hours: float, read: Callable[[Any, Any], dict[str, Any]]
    ) -> dict[str, Any]:
        """``read(cursor, window)`` on a reader thread (the replica's, if any), cached.

        With a replica, the answer says where it was read (``reads_from``).
        """

        def compute() -> dict[str, Any]:
            if self._writer is not None:
                self._writer.flush(self.FLUSH_WAIT)
            deadline = time.monotonic() + self._timeout
            pending = self._router.submit(key, lambda cur: read(cur, reads.open_window(cur, hours)))
            answer: dict[str, Any] = self._router.result(pending, deadline)
            if self._router.replica is not None:
                answer = {**answer, "reads_from": pending.where}
            return answer

        return self._cache.get(key, compute, wait=self._timeout + 1)


def hours_of(period_hours: float) -> float:
    return normalise_hours(check_positive("period_hours", period_hours, maximum=MAX_PERIOD_HOURS))


def check_service(service: str | None) -> None:
    if service is not None and not isinstance(service, str):
        raise ConfigurationError(f"service must be a str or None, got {service!r}")


def _check_endpoint(endpoint: str | None) -> None:
    if endpoint is not None and not isinstance(endpoint, str):
        raise ConfigurationError(f"endpoint must be a str or None, got {endpoint!r}")


def _check_limit(limit: int, maximum: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise ConfigurationError(f"limit must be an int from 1 to {maximum}, got {limit!r}")


def _check_step(step: int, hours: float) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 60 or step % 60:
        raise ConfigurationError(f"step_seconds must be a multiple of 60, got {step!r}")
    if hours * 3600 / step > breakdown.MAX_POINTS:
        raise ConfigurationError(
            f"step_seconds {step} gives more than {breakdown.MAX_POINTS} points over "
            f"{hours:g} hours: take a longer step"
        )
    if step < 3600 and hours > 168:
        raise ConfigurationError(
            "step_seconds under 3600 is only for windows up to 168 hours "
            "(minute rollups are kept 8 days)"
        )
