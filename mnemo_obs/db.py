"""PostgreSQL connections: DSN resolution, connecting with timeouts, one-line errors.

Every part of mnemo_obs that talks to PostgreSQL (writer, collectors,
retention, schema) connects through :func:`connect`, so they all get the
same timeouts and the same readable errors.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from .errors import ConfigurationError, DatabaseError

DSN_ENV = "MNEMO_OBS_DSN"

# How often stop_job() sends its cancel again while the job's thread runs on.
CANCEL_EVERY = 1.0

# Long enough for a loaded server, short enough that a CLI user or the
# writer's retry loop is not left hanging on a black-holed address.
CONNECT_TIMEOUT = 5

# libpq turns TCP keepalives on but leaves their timing to the kernel: on
# Linux the first probe goes after two hours idle. A server whose host
# vanished, or a network that dropped the connection without a reset, would
# leave a writer thread waiting for a reply that long. With these a dead peer
# is noticed in about a minute: probes after 30 s of silence, every 10 s,
# given up after 3. tcp_user_timeout (ms) covers what keepalives do not: data
# sent and never acknowledged. Ignored for Unix sockets; a DSN's own win.
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
TCP_USER_TIMEOUT_MS = "60000"


def resolve_dsn(dsn: str | None) -> str:
    """Return ``dsn``, else ``$MNEMO_OBS_DSN``; raise if neither is set.

    An explicit argument always wins over the environment.
    """
    dsn = dsn if dsn else os.environ.get(DSN_ENV, "")
    if not dsn:
        raise ConfigurationError(f"no PostgreSQL DSN: pass one (--dsn / dsn=) or set {DSN_ENV}")
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise ConfigurationError(
            f"invalid DSN {mask(dsn)!r}: {redact(first_line(exc), dsn)}"
        ) from None
    return dsn


# A password in a URL (scheme://user:secret@host, up to the last "@" of the
# word), in a URL query (?password=secret) or in a key/value DSN
# (password=secret or password='se cret').
_URL_SECRET = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)([^\s]*)@")
_QUERY_SECRET = re.compile(r"([?&]password=)([^&#\s]*)", re.IGNORECASE)
_KV_SECRET = re.compile(r"((?<![?&\w])password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)", re.IGNORECASE)
MASK = "***"


def mask(text: str) -> str:
    """``text`` with every password in a DSN or URL it holds replaced by ``***``."""
    text = _URL_SECRET.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _KV_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)


def _secrets(source: str) -> set[str]:
    """The passwords ``source`` (a DSN or URL, parseable or not) carries, and their words."""
    found = {m.group(2) for m in _URL_SECRET.finditer(source)}
    found |= {m.group(2) for m in _QUERY_SECRET.finditer(source)}
    found |= {m.group(2).strip("'") for m in _KV_SECRET.finditer(source)}
    with contextlib.suppress(psycopg2.Error):
        found.add(psycopg2.extensions.parse_dsn(source).get("password", ""))
    # libpq quotes fragments of a DSN it cannot parse, such as one word of
    # a quoted password: mask each word too.
    words = {word for secret in found for word in secret.split() if len(word) >= 3}
    return {secret for secret in found | words if secret}


def redact(text: str, *sources: str | None) -> str:
    """``text`` with passwords masked: any DSN or URL in it, and those of ``sources``.

    For messages built from an error about a DSN or Redis URL: the error may
    quote the password, or part of it.
    """
    text = mask(text)
    for secret in sorted(
        {s for source in sources if source for s in _secrets(source)}, key=len, reverse=True
    ):
        text = text.replace(secret, MASK)
    return text


def explain(exc: BaseException, dsn: str | None = None) -> str:
    """One line for a PostgreSQL error: masked, with what to do when we know it."""
    if isinstance(exc, psycopg2.errors.UndefinedTable) and "metrics" in str(exc):
        return MISSING_TABLE
    return redact(first_line(exc), dsn)


MISSING_TABLE = (
    'the "metrics" table does not exist: run `mnemo-obs migrate`, or pass create_schema=True'
)


def describe(dsn: str) -> str:
    """Name the server and database of ``dsn`` for messages, never its password."""
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<invalid DSN>"
    host = params.get("host", "local socket")
    port = params.get("port", "5432")
    dbname = params.get("dbname", params.get("user", "?"))
    return f"{host}:{port}/{dbname}"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (psycopg2's are multi-line)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def keepalive_params(params: dict[str, str]) -> dict[str, str]:
    """The :data:`KEEPALIVES` settings (and tcp_user_timeout) that ``params`` does not set."""
    extra = {key: value for key, value in KEEPALIVES.items() if key not in params}
    # tcp_user_timeout is libpq 12+; an older libpq would refuse the connection.
    if psycopg2.extensions.libpq_version() >= 120000 and "tcp_user_timeout" not in params:
        extra["tcp_user_timeout"] = TCP_USER_TIMEOUT_MS
    return extra


def connect(
    dsn: str,
    *,
    application_name: str = "mnemo_obs",
    connect_timeout: int = CONNECT_TIMEOUT,
    **kwargs: object,
) -> psycopg2.extensions.connection:
    """Open a connection with a connect timeout, TCP keepalives and an application name.

    Settings already in the DSN win over these defaults. A failure raises
    :class:`DatabaseError` whose message names the server and the cause.
    """
    params = psycopg2.extensions.parse_dsn(dsn)
    extra: dict[str, object] = {**keepalive_params(params), **kwargs}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = connect_timeout
    if "application_name" not in params:
        extra["application_name"] = application_name
    try:
        return psycopg2.connect(dsn, **extra)
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {describe(dsn)}: {explain(exc, dsn)}"
        ) from exc


def cancel_backend(dsn: str, pid: int) -> None:
    """Ask the server to cancel what backend ``pid`` runs, from a connection of its own.

    Never ``connection.cancel()``: psycopg2 holds the GIL through libpq's
    PQcancel, which waits for the server's answer, so a server that stopped
    answering would stop every thread of the process. Connecting and
    querying release the GIL, and both are bounded here. Errors are ignored:
    the statement may have ended meanwhile, or the server be gone.
    """
    conn = None
    try:
        conn = connect(dsn, application_name="mnemo_obs.cancel", connect_timeout=2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 2000")
            cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
    except Exception:  # nothing more to do: best effort by nature
        pass
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def stop_job(
    thread: threading.Thread | None,
    dsn: str,
    backend: Callable[[], int | None],
    timeout: float | None,
    name: str,
) -> bool:
    """Wait for a background job's thread to end, cancelling its statement until it does.

    The job has been told to stop; this ends the statement it waits on. A
    cancel that reaches the backend between two statements is lost, and
    the next statement (a lock wait, say) would run on: so the cancel goes
    again every ``CANCEL_EVERY`` seconds, to the backend ``backend()``
    names then, until the thread has ended. Each cancel runs on a thread of
    its own (named ``name``), so a server that stopped answering cannot
    hold this call past ``timeout`` (None: no limit).

    Returns:
        True when the thread has ended (or there was none).
    """
    if thread is None:
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    while thread.is_alive():
        pid = backend()
        if pid is not None:
            threading.Thread(target=cancel_backend, args=(dsn, pid), name=name, daemon=True).start()
        wait = CANCEL_EVERY if deadline is None else min(CANCEL_EVERY, deadline - time.monotonic())
        thread.join(max(wait, 0.0))
        if deadline is not None and time.monotonic() >= deadline:
            break
    return not thread.is_alive()
