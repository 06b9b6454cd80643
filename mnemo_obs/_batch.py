"""A batch of encoded rows into PostgreSQL: into ``metrics``, and for the rollups.

With the rollup tables present, a batch is two COPYs of the same bytes in
one transaction: into ``metrics``, and into ``metrics_rollups_pending``,
which a background job aggregates into rollups. Raw rows and rollups so
never disagree, whatever retries, outages or rejections happen. Without
them (a database not migrated since), the batch is one COPY into
``metrics``, in autocommit.

Why not aggregate each batch as it is written: measured here, doing it in
PostgreSQL in the batch's transaction cut the writer's rows/s to 0.4 of a
plain COPY, and in Python it cost the request threads (which share the
GIL with the writer) 0.3 µs a row; the second COPY costs about 0.8 of a
plain COPY's throughput and no Python work (``python -m benchmarks --only
writer``).
"""

from __future__ import annotations

import io
import re
from contextlib import suppress
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions

from ._copy import HEADER, TRAILER
from .db import first_line
from .rollups import sql as rollup_sql

_COLUMNS = "timestamp, metric_type, metric_name, value, metadata"
_COPY_LINE = re.compile(r"COPY metrics, line (\d+)")


@dataclass(frozen=True)
class Target:
    """Where a connection sends batches: COPY statements, of the same bytes, in one transaction."""

    copies: tuple[str, ...]


DIRECT = Target((f"COPY metrics ({_COLUMNS}) FROM STDIN WITH (FORMAT binary)",))
WITH_ROLLUPS = Target(
    (
        *DIRECT.copies,
        f"COPY {rollup_sql.PENDING} ({_COLUMNS}) FROM STDIN WITH (FORMAT binary)",
    )
)


def prepare(conn: psycopg2.extensions.connection) -> Target:
    """Choose the target of a fresh writer connection (in autocommit): with rollups if it can."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (rollup_sql.PENDING,))
        (has_rollups,) = cur.fetchone()
    if not has_rollups:
        return DIRECT
    conn.autocommit = False
    return WITH_ROLLUPS


class Interrupted(Exception):
    """The connection failed during a batch: what is left to write, and the cause."""

    def __init__(self, remaining: list[bytes], written: int, rejected: int, cause: BaseException):
        super().__init__(str(cause))
        self.remaining = remaining
        self.written = written
        self.rejected = rejected
        self.cause = cause


def _send(conn: psycopg2.extensions.connection, lines: list[bytes], target: Target) -> None:
    data = b"".join((HEADER, *lines, TRAILER))
    # One read of the whole batch: psycopg2 releases and retakes the GIL
    # around each chunk it sends, and while request threads are busy each
    # retake can wait a full switch interval (5 ms); 8 KiB chunks made that
    # a dozen waits per batch.
    in_transaction = len(target.copies) > 1
    try:
        with conn.cursor() as cur:
            for sql in target.copies:
                cur.copy_expert(sql, io.BytesIO(data), size=len(data) + 1)
        if in_transaction:
            conn.commit()
    except BaseException:
        if in_transaction and not conn.closed:
            with suppress(psycopg2.Error):
                conn.rollback()
        raise


def _bad_line(exc: psycopg2.Error, size: int) -> int | None:
    """Index of the line PostgreSQL names in a COPY error, if it names one in range."""
    context = getattr(getattr(exc, "diag", None), "context", None) or ""
    match = _COPY_LINE.search(context)
    if match is None:
        return None
    index = int(match.group(1)) - 1
    return index if 0 <= index < size else None


def write_lines(
    conn: psycopg2.extensions.connection, lines: list[bytes], target: Target = DIRECT
) -> tuple[int, int, str | None]:
    """Write ``lines``; return (rows written, rows rejected, first rejection message).

    A data error (a constraint, a value the column refuses) costs only its
    own row: COPY names the line, so the rows before it are written again
    and the rest goes on; without a line number (a trigger on ``metrics``)
    the chunk is halved. Any other failure is the connection's, and raises
    :class:`Interrupted` with the rows not yet written.
    """
    written = rejected = 0
    error = None
    stack = [lines]
    while stack:
        chunk = stack.pop()
        try:
            _send(conn, chunk, target)
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
            rejected_now, pieces = _split(chunk, _bad_line(exc, len(chunk)))
            rejected += rejected_now
            if rejected_now and error is None:
                error = first_line(exc)
            stack.extend(reversed([piece for piece in pieces if piece]))
        except Exception as exc:
            remaining = [line for piece in stack for line in piece] + chunk
            raise Interrupted(remaining, written, rejected, exc) from exc
        else:
            written += len(chunk)
    return written, rejected, error


def _split(chunk: list[bytes], bad: int | None) -> tuple[int, list[list[bytes]]]:
    if bad is not None:
        return 1, [chunk[:bad], chunk[bad + 1 :]]
    if len(chunk) == 1:
        return 1, []
    half = len(chunk) // 2
    return 0, [chunk[:half], chunk[half:]]
