"""The monitoring URLs as one Django view that hands the request to the monitoring app.

The view rebuilds the WSGI environ with the matched prefix moved from
``PATH_INFO`` to ``SCRIPT_NAME``, calls the
:class:`~mnemo_obs.MonitoringApp` and turns its answer into a Django
response: whole for JSON, streamed for the live log stream (Django closes
the stream when the client goes, which frees its slot).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..wsgi import ENVIRON_KEY

# Hop-by-hop headers are the server's to set; Content-Length Django's.
_NOT_COPIED = frozenset(("connection", "keep-alive", "transfer-encoding", "content-length"))


@csrf_exempt  # every route is GET; other methods get the monitoring app's 405, not a CSRF 403
def monitoring(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Answer ``{mount}/<path>`` from the process's monitoring app."""
    from .config import get_monitoring  # here: the URLconf loads before settings are read

    environ: dict[str, Any] = dict(request.META)
    full = request.path_info
    mount = full[: len(full) - len(path)].rstrip("/") if full.endswith(path) else full
    environ["SCRIPT_NAME"] = request.META.get("SCRIPT_NAME", "") + _wsgi_str(mount)
    environ["PATH_INFO"] = "/" + _wsgi_str(path)
    trace_id = request.META.get(ENVIRON_KEY)
    if trace_id:
        environ["HTTP_X_TRACE_ID"] = trace_id  # the middleware's id, not a second one
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return _no_write

    result = get_monitoring()(environ, start_response)
    if not started:  # Falcon starts the response before it returns, a stream's too
        raise RuntimeError("the monitoring app answered without start_response")
    status = int(started[0][:3])
    response: HttpResponseBase
    if isinstance(result, (list, tuple)):
        response = HttpResponse(b"".join(result), status=status)
    else:  # the live log stream; Django calls its close() when done, freeing its slot
        response = StreamingHttpResponse(result, status=status)
    response.reason_phrase = started[0][4:] or response.reason_phrase
    for name, value in started[1]:
        if name.lower() not in _NOT_COPIED:
            response[name] = value
    return response


def _wsgi_str(text: str) -> str:
    """A decoded path as the WSGI environ holds it (UTF-8 bytes as latin-1)."""
    return text.encode("utf-8").decode("latin-1")


def _no_write(data: bytes) -> None:
    raise RuntimeError("the monitoring app does not use write()")
