"""MetricsMiddleware for Django: one row per request, named by its URL pattern, and a trace id."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from .._guard import EXPOSE_HEADER, METHOD_MAX, UNMATCHED, Recorder, expose
from ..trace_context import continued_trace_id
from ..tracing import TRACE_HEADER, _current
from ..wsgi import ENVIRON_KEY
from .config import get_monitoring, recording_settings
from .views import monitoring as monitoring_view

_perf_counter = time.perf_counter
_time = time.time


def endpoint_of(request: HttpRequest) -> str:
    """The URL pattern that matched, from the root (``/api/items/<int:pk>``), else ``<unmatched>``.

    ``resolver_match.route`` joins the patterns of every ``include()`` on
    the way; a ``re_path`` gives its regular expression, without its ``^``.
    """
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if match is None or not isinstance(route, str):
        return UNMATCHED
    return "/" + route.removeprefix("^")


class MetricsMiddleware(Recorder):
    """Time each request, give it a trace id, and queue one ``api`` row named by its route.

    Put it first in ``MIDDLEWARE``: it then times the other middlewares too,
    and sees the requests they answer themselves. Settings come from
    ``settings.MNEMO_OBS`` (see :func:`~mnemo_obs.django.get_monitoring`):
    ``skip_paths`` (default ``("/health", "/metrics")``) and
    ``skip_prefixes`` are compared with ``request.path_info``.

    The trace id follows the rules of :class:`~mnemo_obs.MetricsWSGIMiddleware`:
    in ``request.META["mnemo_obs.trace_id"]``, in
    :func:`mnemo_obs.current_trace_id` and on log records while the view
    runs, and in the response's ``X-Trace-ID``. Requests to the monitoring
    URLs (``mnemo_obs.django.urls``) and skipped paths get no row. An
    exception that escapes Django's own handling is recorded as a 500 and
    re-raised.
    """

    sync_capable = True
    async_capable = False  # under ASGI, Django runs it in a thread

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.monitoring = get_monitoring()
        recording = recording_settings()
        super().__init__(
            self.monitoring.writer, recording["skip_paths"], recording["skip_prefixes"]
        )
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        environ = request.META
        trace_id = continued_trace_id(environ)
        environ[ENVIRON_KEY] = trace_id
        token = _current.set(trace_id)
        started, wall = _perf_counter(), _time()
        try:
            response = self.get_response(request)
        except Exception:
            self._record(request, started, wall, 500, trace_id)
            raise
        finally:
            _current.reset(token)
        try:
            response[TRACE_HEADER] = trace_id
            response[EXPOSE_HEADER] = expose(response.get(EXPOSE_HEADER))
        except Exception as exc:
            self._failed("headers", exc)
        self._record(request, started, wall, response.status_code, trace_id)
        return response

    def _record(
        self, request: HttpRequest, started: float, wall: float, status: int, trace_id: str
    ) -> None:
        try:
            latency_ms = (_perf_counter() - started) * 1000.0
            path = request.path_info
            match = getattr(request, "resolver_match", None)
            if (
                path in self._skip_paths
                or (self._skip_prefixes and path.startswith(self._skip_prefixes))
                or getattr(match, "func", None) is monitoring_view
            ):
                return
            method = request.method or "GET"
            self._submit(
                wall, endpoint_of(request), latency_ms, method[:METHOD_MAX], status, trace_id
            )
        except Exception as exc:
            self._failed("record", exc)
