"""The MetricsCollector's reads of the sampler's rows: gauge history, window ratios, the fleet.

A mixin, so ``summary.py`` stays the summary: :meth:`GaugeViews.gauges` is a
view like the others (reader thread, timeout, cache), and the summary adds
what :meth:`GaugeViews._infrastructure` reads, in its own PostgreSQL job,
to its redis, postgres and writer sections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import gauges
from ..errors import ConfigurationError
from ..rollups import reads
from . import breakdown
from .fleet import fleet as read_fleet
from .gauges import postgres_window, redis_window, series, window_counters
from .views import hours_of

if TYPE_CHECKING:
    from ._pg import PgConnections
    from .redis_stats import RedisCollector


class GaugeViews:
    """Gauge time series, and the summary's window ratios and fleet."""

    _connections: PgConnections
    redis: RedisCollector | None
    _view: Callable[..., dict[str, Any]]

    def gauges(
        self,
        metric_type: str,
        metric_name: str,
        period_hours: float = 1.0,
        *,
        step_seconds: int | None = None,
    ) -> dict[str, Any]:
        """A gauge's history: one series per source of contiguous points, nulls where none.

        ``metric_type`` is ``redis``, ``postgres`` or ``system`` and
        ``metric_name`` one of its gauges (:data:`mnemo_obs.gauges.NAMES`).
        ``step_seconds`` is a whole number of seconds (default: the
        timeseries' choice, 60 s for a window up to two hours), at most
        1,440 points.

        Raises:
            ValueError: a bad argument, naming it.
            DatabaseError: PostgreSQL failed, or did not answer within ``timeout``.
        """
        check_gauge(metric_type, metric_name)
        hours = hours_of(period_hours)
        if step_seconds is not None:
            check_gauge_step(step_seconds, hours)

        def read(cur: Any, window: reads.Window) -> dict[str, Any]:
            step = step_seconds or breakdown.choose_step(window)
            return series(cur, window, metric_type, metric_name, step)

        return self._view(("gauges", metric_type, metric_name, hours, step_seconds), hours, read)

    def _infrastructure(self, cur: Any, hours: float, fleet: bool) -> dict[str, Any]:
        """On a reader thread: the counters' increase over the window, and the fleet."""
        source = self.redis.where if self.redis is not None else None
        window = reads.open_window(cur, hours)
        found: dict[str, Any] = {"counters": window_counters(cur, window, source)}
        if fleet:
            found["fleet"] = read_fleet(cur, window)
        return found

    def _add_infrastructure(
        self, result: dict[str, Any], found: dict[str, Any] | None, fleet: bool
    ) -> None:
        """Put what :meth:`_infrastructure` read in the summary's sections (nulls if it failed)."""
        error = None
        if found is None or "error" in found:
            error = (found or {}).get("error") or result["postgres"].get("error")
            found = {}
        counters = found.get("counters")
        if self.redis is not None:
            result["redis"] = {**result["redis"], **redis_window(counters)}
        if "error" not in result["postgres"]:
            result["postgres"] = {**result["postgres"], **postgres_window(counters)}
        if fleet:
            result["fleet"] = found.get("fleet") or {"error": error or "no answer"}


def check_gauge(metric_type: object, metric_name: object) -> None:
    """Refuse a type or name the sampler does not record, naming it."""
    if metric_type not in gauges.NAMES:
        raise ConfigurationError(
            f"metric_type must be one of {', '.join(gauges.NAMES)}, got {metric_type!r}"
        )
    names = gauges.NAMES[metric_type]  # type: ignore[index]
    if metric_name not in names:
        raise ConfigurationError(
            f"metric_name must be a {metric_type} gauge ({', '.join(names)}), got {metric_name!r}"
        )


def check_gauge_step(step: object, hours: float) -> None:
    """A whole number of seconds from 1 to 86,400 giving at most 1,440 points."""
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 86400:
        raise ConfigurationError(
            f"step_seconds must be a whole number from 1 to 86400, got {step!r}"
        )
    if hours * 3600 / step > breakdown.MAX_POINTS:
        raise ConfigurationError(
            f"step_seconds {step} gives more than {breakdown.MAX_POINTS} points over "
            f"{hours:g} hours: take a longer step"
        )
