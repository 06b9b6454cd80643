"""``mnemo-obs serve``: the demo app with mnemo_obs installed, served by :func:`mnemo_obs.serve`.

With no DSN it first starts a throwaway PostgreSQL, so it handles SIGINT and
SIGTERM from the start: a signal while the database starts still stops it.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
from types import FrameType
from typing import IO

from . import db, embedded, schema
from .demo import make_app
from .installation import Installation, install
from .resources import TOKEN_ENV
from .serving import FLUSH_TIMEOUT, serve

log = logging.getLogger("mnemo_obs.serve")


def _print_urls(
    out: IO[str], base: str, installation: Installation, log_token: str | None = None
) -> None:
    auth = ' -H "Authorization: Bearer $MNEMO_OBS_TOKEN"' if installation.token_required else ""
    log_auth = f'-H "Authorization: Bearer {log_token or "$MNEMO_OBS_TOKEN"}"'
    lines = [f"mnemo-obs demo serving on {base} (Ctrl-C to stop)"]
    if installation.dashboard_path is not None:
        lines.append(_dashboard_line(base, installation, log_token))
    lines += [
        "Try:",
        f"  curl -i {base}/items/42",
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


def _dashboard_line(base: str, installation: Installation, log_token: str | None) -> str:
    """The dashboard's URL; a token made for this run goes in the fragment.

    Browsers never send the fragment (``#token=...``) to the server; the page
    reads it, keeps it in the tab's sessionStorage and takes it out of the
    address bar.
    """
    url = f"{base}{installation.dashboard_path}"
    if log_token:
        return f"Dashboard: {url}#token={log_token}"
    if installation.token_required:
        return f"Dashboard: {url} (it asks for the token; or add #token=<token> to the URL)"
    return f"Dashboard: {url}"


def _stats_line(installation: Installation, flushed: bool) -> str:
    """The writer's books at exit: rows written, and every row dropped, however."""
    stats = installation.writer.stats()
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped_"))
    line = f"stopped: {stats['written']} rows written, {dropped} dropped"
    if stats["rejected"]:
        line += f", {stats['rejected']} rejected by the database"
    if not flushed:
        line += f" (the flush timed out after {FLUSH_TIMEOUT:g} s)"
    return line


def run(
    *,
    dsn: str | None,
    redis_url: str | None,
    token: str | None,
    host: str,
    port: int,
    threads: int,
    max_queue: int | None = None,
    read_dsn: str | None = None,
    out: IO[str] = sys.stdout,
) -> int:
    """Serve the demo until SIGINT or SIGTERM; return 0 once every row is written, else 1.

    ``dsn`` None (and no ``$MNEMO_OBS_DSN``) starts an embedded throwaway
    PostgreSQL, deleted at exit. The schema is applied either way.
    ``read_dsn`` (else ``$MNEMO_OBS_READ_DSN``) is a replica to read from.

    Raises:
        ConfigurationError: a bad setting, or the address cannot be bound.
        DatabaseError: PostgreSQL cannot be reached or migrated.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    database = installation = None
    flushed = True
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
        schema.apply_schema(dsn)  # now, so an unreachable database fails at once
        app = make_app()
        # Logs say more than metrics: without a token, one is made for them alone.
        log_token = None if token or os.environ.get(TOKEN_ENV) else secrets.token_urlsafe(24)
        installation = install(
            app,
            dsn=dsn,
            read_dsn=read_dsn,
            redis_url=redis_url,
            token=token,
            log_token=log_token,
            create_schema=True,
            max_queue=max_queue,
        )
        ready_installation = installation
        flushed = serve(
            app,
            host=host,
            port=port,
            threads=threads,
            flush_timeout=FLUSH_TIMEOUT,
            ready=lambda base: _print_urls(out, base, ready_installation, log_token),
        )
        print(_stats_line(installation, flushed), file=out, flush=True)
    except KeyboardInterrupt:
        pass  # a signal before serving began: clean up all the same
    finally:
        for sig in stop_signals:  # cleanup is bounded; a second Ctrl-C must not cut it short
            signal.signal(sig, signal.SIG_IGN)
        try:
            if installation is not None:
                flushed = installation.close(FLUSH_TIMEOUT) and flushed
            if database is not None:
                database.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0 if flushed else 1
