"""MetricsWSGIMiddleware: the same row and trace id for any WSGI app (Flask, Django, ...)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._guard import EXPOSE_HEADER, METHOD_MAX, UNMATCHED, Recorder, expose
from .trace_context import continued_trace_id
from .tracing import TRACE_HEADER, _current

if TYPE_CHECKING:
    from .monitoring import MonitoringApp
    from .writer import MetricsWriter

ENVIRON_KEY = "mnemo_obs.trace_id"
# Without endpoint_of, the name is one per method, so raw paths (ids,
# scanners' probes) never become metric names; unknown methods share one.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
_BY_METHOD = {method: f"<{method}>" for method in _METHODS}
_OTHER = "<OTHER>"

_perf_counter = time.perf_counter
_time = time.time


class MetricsWSGIMiddleware(Recorder):
    """Wrap a WSGI app: time each request, give it a trace id, queue one ``api`` row.

    The trace id follows the same rules as :class:`~mnemo_obs.MetricsMiddleware`
    and is in ``environ["mnemo_obs.trace_id"]``. The row's endpoint is
    ``endpoint_of(environ)``, called once the app has returned (so it can
    read routing results the framework left in ``environ``); None, or no
    ``endpoint_of``, gives ``<unmatched>`` or ``<GET>``-style names. An
    exception from the app is recorded as a 500 and re-raised.

    Args:
        app: the WSGI callable.
        writer: where rows go (its ``submit_request``).
        skip_paths: exact ``PATH_INFO`` values not recorded (they still get
            a trace id and its header, but no row).
        skip_prefixes: ``PATH_INFO`` prefixes not recorded, likewise.
        endpoint_of: ``environ -> str | None``, the route template.
        monitoring: a :func:`mnemo_obs.monitoring_app` to serve at
            ``monitoring_prefix`` (its requests get a trace id, no row);
            ``writer`` must then be its ``writer``.
        monitoring_prefix: where ``monitoring`` is mounted (default
            ``/api/monitoring/advanced``, as :func:`mnemo_obs.install`).
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        writer: MetricsWriter,
        *,
        skip_paths: Iterable[str] = ("/health", "/metrics"),
        skip_prefixes: Iterable[str] = (),
        endpoint_of: Callable[[dict[str, Any]], str | None] | None = None,
        monitoring: MonitoringApp | None = None,
        monitoring_prefix: str = "/api/monitoring/advanced",
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI callable, not {app!r}")
        if endpoint_of is not None and not callable(endpoint_of):
            raise TypeError(f"endpoint_of must be callable or None, not {endpoint_of!r}")
        if monitoring is not None:
            from ._mount import with_monitoring

            app, skip_paths, skip_prefixes = with_monitoring(
                app, writer, monitoring, monitoring_prefix, skip_paths, skip_prefixes
            )
        super().__init__(writer, skip_paths, skip_prefixes)
        self.app = app
        self._endpoint_of = endpoint_of

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        trace_id = continued_trace_id(environ)
        environ[ENVIRON_KEY] = trace_id
        path = environ.get("PATH_INFO", "")
        if path in self._skip_paths or (
            self._skip_prefixes and path.startswith(self._skip_prefixes)
        ):
            return self._skipped(environ, start_response, trace_id)
        status: list[Any] = []  # [status line, when start_response was called]
        traced_start_response = self._traced(start_response, trace_id, status)
        token = _current.set(trace_id)
        started, wall = _perf_counter(), _time()
        try:
            result = self.app(environ, traced_start_response)
        except Exception:
            self._record(environ, started, wall, "500", trace_id, None)
            raise
        finally:
            _current.reset(token)
        if status:
            self._record(environ, started, wall, status[0], trace_id, None)
            return result
        # start_response not called yet: the app answers lazily, on iteration.
        return _RecordOnClose(result, self, environ, started, wall, status, trace_id)

    def _skipped(
        self, environ: dict[str, Any], start_response: Callable[..., Any], trace_id: str
    ) -> Any:
        """A skipped path: the trace id (header, environ, logs) like any request, but no row."""
        token = _current.set(trace_id)
        try:
            return self.app(environ, self._traced(start_response, trace_id, None))
        finally:
            _current.reset(token)

    def _traced(
        self, start_response: Callable[..., Any], trace_id: str, status: list[Any] | None
    ) -> Callable[..., Any]:
        """``start_response`` adding the trace headers, and noting into ``status``
        the status line and when it came (None: a skipped path, nothing noted)."""

        def traced_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            try:
                if status is not None:
                    status[:] = [status_line, _perf_counter()]
                _add_trace_headers(headers, trace_id)
            except Exception as exc:
                self._failed("start_response", exc)
            if exc_info is None:
                return start_response(status_line, headers)
            return start_response(status_line, headers, exc_info)

        return traced_start_response

    def _record(
        self,
        environ: dict[str, Any],
        started: float,
        wall: float,
        status: str,
        trace_id: str,
        ended: float | None,
    ) -> None:
        try:
            # Until the app returned (or, for an app that answers lazily,
            # until it started its response): what Falcon's middleware
            # measures too. Streaming a body after that is not included.
            latency_ms = ((ended or _perf_counter()) - started) * 1000.0
            method = environ.get("REQUEST_METHOD", "GET")
            endpoint = None
            if self._endpoint_of is not None:
                try:
                    endpoint = self._endpoint_of(environ)
                except Exception as exc:
                    self._failed("endpoint_of", exc)
                if endpoint is not None and not isinstance(endpoint, str):
                    self._failed(
                        "endpoint_of",
                        TypeError(f"endpoint_of returned {type(endpoint).__name__}, not str"),
                    )
                    endpoint = None
                endpoint = endpoint or UNMATCHED
            else:
                endpoint = _BY_METHOD.get(method, _OTHER)
            # The status line goes as it is: the writer thread takes its number.
            self._submit(wall, endpoint, latency_ms, method[:METHOD_MAX], status or 500, trace_id)
        except Exception as exc:
            self._failed("record", exc)


def _add_trace_headers(headers: list[tuple[str, str]], trace_id: str) -> None:
    """X-Trace-ID, and X-Trace-ID added to what Access-Control-Expose-Headers lists."""
    existing = [value for name, value in headers if name.lower() == "access-control-expose-headers"]
    headers[:] = [
        (name, value)
        for name, value in headers
        if name.lower() not in ("x-trace-id", "access-control-expose-headers")
    ]
    headers.append((TRACE_HEADER, trace_id))
    headers.append((EXPOSE_HEADER, expose(", ".join(existing))))


class _RecordOnClose:
    """The app's iterable, recording the row when the server closes it."""

    def __init__(
        self,
        result: Iterable[bytes],
        owner: MetricsWSGIMiddleware,
        environ: dict[str, Any],
        started: float,
        wall: float,
        status: list[Any],
        trace_id: str,
    ) -> None:
        self._result = result
        self._args = (environ, started, wall, status, trace_id)
        self._owner = owner

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        environ, started, wall, status, trace_id = self._args
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if status:
                self._owner._record(environ, started, wall, status[0], trace_id, status[1])
            else:
                self._owner._record(environ, started, wall, "", trace_id, None)
