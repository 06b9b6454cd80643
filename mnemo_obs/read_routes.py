"""Falcon resources of the read API: per endpoint, over time, the slowest requests.

``GET {prefix}/endpoints``, ``{prefix}/timeseries`` and ``{prefix}/slowest``,
behind the summary's token. Parameters are checked strictly (a 400 that
names the parameter), and a database that fails or does not answer within
the collector's timeout gives a 503 with a JSON reason, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import falcon

from .collectors import breakdown
from .errors import ConfigurationError, DatabaseError
from .resources import Query, _BearerCheck

if TYPE_CHECKING:
    from .collectors import MetricsCollector

ROUTES = ("endpoints", "timeseries", "slowest")


class _ReadResource:
    """What the three routes share: the token, the answer, the errors."""

    allowed: tuple[str, ...] = ()

    def __init__(self, collector: MetricsCollector, check: _BearerCheck) -> None:
        self._collector = collector
        self._check = check

    def read(self, query: Query) -> dict[str, Any]:
        raise NotImplementedError

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the view for the query's parameters."""
        self._check(req)
        query = Query(req, self.allowed)
        try:
            resp.media = self.read(query)
        except ConfigurationError as exc:
            raise falcon.HTTPBadRequest(title="Invalid parameter", description=str(exc)) from None
        except DatabaseError as exc:
            raise falcon.HTTPServiceUnavailable(
                title="Database unavailable", description=str(exc), retry_after=5
            ) from None
        # Live figures: no shared cache should keep them.
        resp.cache_control = ["no-store"]


class EndpointsResource(_ReadResource):
    """``GET {prefix}/endpoints?period_hours=&service=&limit=``: where the time goes."""

    allowed = ("period_hours", "service", "limit")

    def read(self, query: Query) -> dict[str, Any]:
        return self._collector.endpoints(
            query.period_hours(),
            service=query.text("service"),
            limit=query.integer("limit", 50, 1, breakdown.MAX_ENDPOINTS) or 50,
        )


class TimeseriesResource(_ReadResource):
    """``GET {prefix}/timeseries?period_hours=&step_seconds=&endpoint=&service=``."""

    allowed = ("period_hours", "step_seconds", "endpoint", "service")

    def read(self, query: Query) -> dict[str, Any]:
        step = query.integer("step_seconds", None, 60, 86400)
        if step is not None and step % 60:
            raise falcon.HTTPInvalidParam(
                f"It must be a multiple of 60, got {step}.", "step_seconds"
            )
        return self._collector.timeseries(
            query.period_hours(),
            step_seconds=step,
            endpoint=query.text("endpoint"),
            service=query.text("service"),
        )


class SlowestResource(_ReadResource):
    """``GET {prefix}/slowest?period_hours=&limit=&endpoint=&service=``: slowest first."""

    allowed = ("period_hours", "limit", "endpoint", "service")

    def read(self, query: Query) -> dict[str, Any]:
        return self._collector.slowest(
            query.period_hours(),
            limit=query.integer("limit", 20, 1, breakdown.MAX_SLOWEST) or 20,
            endpoint=query.text("endpoint"),
            service=query.text("service"),
        )


RESOURCES: dict[str, Callable[[Any, _BearerCheck], _ReadResource]] = {
    "endpoints": EndpointsResource,
    "timeseries": TimeseriesResource,
    "slowest": SlowestResource,
}


def add_read_routes(
    app: falcon.App, prefix: str, collector: MetricsCollector, token: str | None
) -> tuple[str, ...]:
    """Add the three routes under ``prefix``; their paths."""
    check = _BearerCheck(token)
    paths = []
    for name in ROUTES:
        path = f"{prefix}/{name}"
        app.add_route(path, RESOURCES[name](collector, check))
        paths.append(path)
    return tuple(paths)
