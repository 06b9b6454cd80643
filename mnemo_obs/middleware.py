"""MetricsMiddleware: one row per request for Falcon 3.1 and 4.x (WSGI) apps.

Only ``process_request`` and ``process_response`` are defined: Falcon
resolves hooks once at startup, so the ones we leave out cost nothing.
``process_response`` also runs for 404s, HTTPErrors and 500s from resources
that raise (Falcon's default error handler turns those into responses
first), so every answered request gets its header and its row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._guard import EXPOSE_HEADER, METHOD_MAX, UNMATCHED, Recorder
from .trace_context import continued_trace_id
from .tracing import TRACE_HEADER, _current

if TYPE_CHECKING:
    import falcon  # not at run time: `import mnemo_obs` must not load Falcon

    from .writer import MetricsWriter


_perf_counter = time.perf_counter
_time = time.time


class MetricsMiddleware(Recorder):
    """Time each request, give it a trace id, and queue one ``api`` row for it.

    The trace id is the incoming ``X-Trace-ID`` if it is a well-formed UUID
    (lower-cased), else a fresh uuid4. It is in ``req.context.trace_id``,
    in :func:`mnemo_obs.tracing.current_trace_id` (and so on log records,
    through :class:`~mnemo_obs.TraceIdFilter`) while the request runs, and in
    the response's ``X-Trace-ID`` header, which ``Access-Control-Expose-Headers``
    lists. Put it first in the middleware list: its ``process_response`` then
    runs last, after any CORS middleware has set that header.

    Paths in ``skip_paths`` (exact) or under ``skip_prefixes`` get no row;
    they still get a trace id, its header, and the id on their log records.

    Args:
        writer: where rows go (its ``submit_request``).
        skip_paths: exact paths not recorded.
        skip_prefixes: path prefixes not recorded (e.g. ``"/static/"``).
    """

    def __init__(
        self,
        writer: MetricsWriter,
        *,
        skip_paths: Iterable[str] = ("/health", "/metrics"),
        skip_prefixes: Iterable[str] = (),
    ) -> None:
        super().__init__(writer, skip_paths, skip_prefixes)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            trace_id = continued_trace_id(req.env)
            context = req.context
            context.trace_id = trace_id
            path = req.path
            if path in self._skip_paths or (
                self._skip_prefixes and path.startswith(self._skip_prefixes)
            ):
                # Skipped: a trace id and its header like any request, but no row.
                context._mnemo_obs = (None, 0.0, trace_id, _current.set(trace_id))
                return
            context._mnemo_obs = (_perf_counter(), _time(), trace_id, _current.set(trace_id))
        except Exception as exc:
            self._failed("process_request", exc)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        # Guarded whole: an exception here would turn the app's response into a 500.
        try:
            state = getattr(req.context, "_mnemo_obs", None)
            if state is None:  # our process_request did not run
                return
            started, wall, trace_id, token = state
            if started is None:  # a skipped path
                self._finish(resp, trace_id, token)
                return
            status = resp.status
            if resp.media is not None and resp.text is None and resp.data is None:
                # Falcon serialises media after the middleware: done here
                # (Falcon keeps the result), the latency is what the client
                # waits for. A streamed body (resp.stream) is not included.
                try:
                    resp.render_body()
                except Exception:  # Falcon will fail the same way and answer 500
                    status = 500
            latency_ms = (_perf_counter() - started) * 1000.0
            # Inlined (not _finish): this is the path every recorded request takes.
            try:  # noqa: SIM105
                _current.reset(token)
            except ValueError:  # set in another context: nothing of ours to undo
                pass
            resp.set_header(TRACE_HEADER, trace_id)
            resp.append_header(EXPOSE_HEADER, TRACE_HEADER)
            self._submit(
                wall,
                req.uri_template or UNMATCHED,
                latency_ms,
                req.method[:METHOD_MAX],
                # The raw status ("200 OK", an int or an HTTPStatus, by Falcon
                # version and app): the writer thread turns it into a number.
                status,
                trace_id,
            )
        except Exception as exc:
            self._failed("process_response", exc)

    @staticmethod
    def _finish(resp: falcon.Response, trace_id: str, token: Any) -> None:
        """Undo the context variable and set the trace id headers (skipped paths)."""
        # try/except, not contextlib.suppress: that costs a context manager per request.
        try:  # noqa: SIM105
            _current.reset(token)
        except ValueError:  # set in another context: nothing of ours to undo
            pass
        resp.set_header(TRACE_HEADER, trace_id)
        # Appended to what the app set (Falcon joins with ", "), in one call.
        resp.append_header(EXPOSE_HEADER, TRACE_HEADER)
