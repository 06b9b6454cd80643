"""``mnemo_obs.serve(app)``: waitress that stops cleanly on SIGTERM, with every row written.

atexit does not run on SIGTERM, and SIGTERM is what container stops and
process managers send: an app served with plain ``waitress.serve`` loses
the rows still queued. :func:`serve` owns the process the way a server
command does, so it (and only it) installs signal handlers.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import waitress
import waitress.wasyncore

from ._support import close_everything
from .errors import ConfigurationError

log = logging.getLogger("mnemo_obs.serve")

# How long the rows still queued at shutdown get to be written.
FLUSH_TIMEOUT = 10.0


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (first address it resolves to), or a one-line error.

    Bound here rather than by waitress, which leaks its socket and threads
    when the bind fails.

    Raises:
        ConfigurationError: the address cannot be resolved or bound.
    """
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_host(host: str) -> str:
    """``host`` as it goes in a URL a client can use."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def serve(
    app: Callable[..., Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 4,
    flush_timeout: float = FLUSH_TIMEOUT,
    ready: Callable[[str], None] | None = None,
    **waitress_options: Any,
) -> bool:
    """Serve ``app`` with waitress until SIGTERM or SIGINT, then shut down cleanly.

    On the signal it stops accepting connections, lets the requests being
    handled finish (waitress gives them 5 s), then writes every queued row
    of every mnemo_obs writer in the process and stops their threads, all
    within ``flush_timeout``. Call it from the main thread (signal handlers
    can only be set there); the previous handlers are restored on return.
    It also sets the ``waitress.queue`` logger to ERROR: waitress otherwise
    logs a warning for every request that waits for a thread, which under
    load costs more than a small app's requests do.

    Args:
        app: the WSGI app (a Falcon app with :func:`mnemo_obs.install`, or
            any app wrapped in :class:`~mnemo_obs.MetricsWSGIMiddleware`).
        host: address to listen on (default 127.0.0.1).
        port: port to listen on; 0 picks a free one (default 8080).
        threads: waitress worker threads (default 4).
        flush_timeout: seconds the queued rows get at shutdown (default 10).
        ready: called with the base URL (``http://host:port``) once listening.
        waitress_options: more ``waitress.create_server`` settings.

    Returns:
        True when every row was written, False when some were dropped at
        shutdown (the database down, or slower than ``flush_timeout``).

    Raises:
        ConfigurationError: the address cannot be bound, or not called from
            the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("serve() must run in the main thread (it handles SIGTERM)")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            # waitress's loop stops on KeyboardInterrupt; its threads finish their requests.
            raise KeyboardInterrupt

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    socket_map: dict[int, object] = {}
    server = None
    flushed = True
    try:
        # One socket: waitress then returns a single TcpWSGIServer.
        server = waitress.create_server(
            app, map=socket_map, sockets=[bind(host, port)], threads=threads, **waitress_options
        )
        if ready is not None:
            ready(f"http://{url_host(str(server.effective_host))}:{server.effective_port}")
        server.run()
    except KeyboardInterrupt:
        pass  # a signal before the server ran: clean up all the same
    finally:
        stopping = True
        # Cleanup is bounded; a second Ctrl-C must not cut it short.
        for sig in stop_signals:
            signal.signal(sig, signal.SIG_IGN)
        try:
            deadline = time.monotonic() + flush_timeout
            if server is not None:
                server.task_dispatcher.shutdown()  # at once when run() already did it
                # The listening socket and any client connection still open.
                waitress.wasyncore.close_all(socket_map)
            flushed = close_everything(max(0.0, deadline - time.monotonic()))
            log.info("stopped%s", "" if flushed else ": some rows could not be written")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return flushed
