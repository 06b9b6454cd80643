"""``GET {prefix}/gauges``: the history of one infrastructure gauge, for charts.

A route of its own rather than a parameter of ``/timeseries``: a time series
of requests has counts and latency percentiles, a gauge has a value (with
its min and max) per point and one series per source (a Redis server, a
host, a process). Behind the summary's token, with strict parameters (a
400 naming the parameter) and a 503 when PostgreSQL fails or does not
answer within the collector's timeout, like the other read routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import falcon

from . import gauges
from .read_routes import _ReadResource
from .resources import Query, _BearerCheck

if TYPE_CHECKING:
    from .collectors import MetricsCollector

ROUTE = "gauges"


class GaugesResource(_ReadResource):
    """``GET {prefix}/gauges?metric_type=&metric_name=&period_hours=&step_seconds=``."""

    allowed = ("metric_type", "metric_name", "period_hours", "step_seconds")

    def read(self, query: Query) -> dict[str, Any]:
        metric_type = _required(query, "metric_type")
        if metric_type not in gauges.NAMES:
            raise falcon.HTTPInvalidParam(
                f"It must be one of {', '.join(gauges.NAMES)}, got {metric_type!r}.",
                "metric_type",
            )
        metric_name = _required(query, "metric_name")
        if metric_name not in gauges.NAMES[metric_type]:
            raise falcon.HTTPInvalidParam(
                f"It must be a {metric_type} gauge ({', '.join(gauges.NAMES[metric_type])}), "
                f"got {metric_name!r}.",
                "metric_name",
            )
        return self._collector.gauges(
            metric_type,
            metric_name,
            query.period_hours(),
            step_seconds=query.integer("step_seconds", None, 1, 86400),
        )


def _required(query: Query, name: str) -> str:
    value = query.text(name)
    if value is None:
        raise falcon.HTTPMissingParam(name)
    return value


def add_gauge_route(
    app: falcon.App, prefix: str, collector: MetricsCollector, token: str | None
) -> str:
    """Add ``{prefix}/gauges``; its path."""
    path = f"{prefix}/{ROUTE}"
    app.add_route(path, GaugesResource(collector, _BearerCheck(token)))
    return path
