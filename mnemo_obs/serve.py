"""``mnemo-obs serve``: the demo app with mnemo_obs installed, served by waitress.

The process is ours, so this module (and only this one) installs signal
handlers: SIGINT and SIGTERM stop accepting, let running requests finish,
flush the writer, stop the embedded database if we started one, and exit 0.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
from types import FrameType
from typing import IO

import waitress
import waitress.wasyncore

from . import db, embedded, schema
from .demo import make_app
from .errors import ConfigurationError
from .installation import Installation, install
from .resources import TOKEN_ENV

log = logging.getLogger("mnemo_obs.serve")

# The writer gets this long to drain its queue at exit; a demo should not hang.
FLUSH_TIMEOUT = 10.0


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _print_urls(
    out: IO[str], base: str, installation: Installation, log_token: str | None = None
) -> None:
    auth = ' -H "Authorization: Bearer $MNEMO_OBS_TOKEN"' if installation.token_required else ""
    log_auth = f'-H "Authorization: Bearer {log_token or "$MNEMO_OBS_TOKEN"}"'
    lines = [
        f"mnemo-obs demo serving on {base} (Ctrl-C to stop)",
        "Try:",
        f"  curl {base}/items/42",
        f"  curl {base}/items/4242        # 404",
        f"  curl {base}/boom              # 500",
        f"  curl '{base}/slow?ms=120'",
        f"  curl{auth} {base}{installation.summary_path}",
        f"  curl{auth} '{base}{installation.summary_path}?period_hours=24'",
        f"  curl {base}/health",
    ]
    if installation.logs is not None:
        lines.append(f"  curl -N {log_auth} {base}{installation.logs.stream_path}")
    if installation.logs is not None and log_token:
        lines.append("  (the live logs always need a token: this one was made for this run)")
    print("\n".join(lines), file=out, flush=True)


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (first address it resolves to), or a one-line error.

    Bound here rather than by waitress, which leaks its socket and threads
    when the bind fails.
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


def run(
    *,
    dsn: str | None,
    redis_url: str | None,
    token: str | None,
    host: str,
    port: int,
    threads: int,
    out: IO[str] = sys.stdout,
) -> int:
    """Serve the demo until SIGINT or SIGTERM; return 0 once every row is written, else 1.

    ``dsn`` None (and no ``$MNEMO_OBS_DSN``) starts an embedded throwaway
    PostgreSQL, deleted at exit. The schema is applied either way.

    Raises:
        ConfigurationError: a bad setting, or the address cannot be bound.
        DatabaseError: PostgreSQL cannot be reached or migrated.
    """
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            # waitress's loop stops on KeyboardInterrupt and lets its threads finish.
            raise KeyboardInterrupt

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    # One warning per queued request costs more than the demo's requests do.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    database = installation = server = None
    socket_map: dict[int, object] = {}
    try:
        if not (dsn or os.environ.get(db.DSN_ENV)):
            print(
                "No --dsn and no $MNEMO_OBS_DSN: starting a throwaway PostgreSQL "
                "(its data is deleted on exit)...",
                file=out,
                flush=True,
            )
            database = embedded.start()
            dsn = database.url()
            print(f"PostgreSQL ready at {db.describe(dsn)}", file=out, flush=True)
        dsn = db.resolve_dsn(dsn)
        schema.apply_schema(dsn)
        app = make_app()
        # Logs say more than metrics: without a token, one is made for them alone.
        log_token = None if token or os.environ.get(TOKEN_ENV) else secrets.token_urlsafe(24)
        installation = install(app, dsn=dsn, redis_url=redis_url, token=token, log_token=log_token)
        # One socket: waitress then returns a single TcpWSGIServer.
        server = waitress.create_server(
            app, map=socket_map, sockets=[_bind(host, port)], threads=threads
        )
        base = f"http://{_url_host(str(server.effective_host))}:{server.effective_port}"
        _print_urls(out, base, installation, log_token)
        server.run()
    except KeyboardInterrupt:
        pass  # a signal before the server ran: clean up all the same
    finally:
        stopping = True
        for sig in stop_signals:  # cleanup is bounded; a second Ctrl-C must not cut it short
            signal.signal(sig, signal.SIG_IGN)
        try:
            if server is not None:
                server.task_dispatcher.shutdown()  # at once when run() already did it
                # The listening socket and any client connection still open.
                waitress.wasyncore.close_all(socket_map)
            flushed = True
            if installation is not None:
                flushed = installation.close(FLUSH_TIMEOUT)
            if server is not None and installation is not None:
                stats = installation.writer.stats()
                dropped = sum(v for k, v in stats.items() if k.startswith("dropped_"))
                print(
                    f"stopped: {stats['written']} rows written, {dropped} dropped"
                    + ("" if flushed else f", flush timed out after {FLUSH_TIMEOUT:g} s"),
                    file=out,
                    flush=True,
                )
            if database is not None:
                database.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0 if flushed else 1
