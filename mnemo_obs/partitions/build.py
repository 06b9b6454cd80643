"""A partitioned twin of a plain table, and the swap that puts it in the plain one's place.

The partitioned layout is derived from the plain one, so the two cannot
drift apart: the twin is made ``LIKE`` the plain table (columns, defaults,
NOT NULL and CHECK constraints, column comments), with the table's comment,
its privileges and every one of its indexes, created on each partition. The
one difference: a primary key must hold the partition column, so
``metrics``'s becomes ``(id, timestamp)``.

Index names are unique in a schema, so the twin's carry a suffix until the
swap, which renames the plain table's out of the way (or drops it) and
gives the twin's their usual names. Everything runs on the caller's cursor,
in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import DatabaseError
from .layout import (
    FIRST,
    LAST,
    Spec,
    ahead_days,
    columns,
    create_partition,
    now,
    partitions,
)

TWIN_SUFFIX = "_partitioned"
KEPT_SUFFIX = "_plain_old"
_NAME_MAX = 63  # PostgreSQL's identifier length


def suffixed(name: str, suffix: str) -> str:
    """``name`` with ``suffix``, cut so that the whole fits in an identifier."""
    return name[: _NAME_MAX - len(suffix)] + suffix


def _indexes(cur: Any, table: str) -> list[tuple[str, bool, bool, str, str | None]]:
    """(name, primary, unique, definition after USING, constraint name) of each index."""
    cur.execute(
        """SELECT c.relname, i.indisprimary, i.indisunique, pg_get_indexdef(i.indexrelid),
                  (SELECT conname FROM pg_constraint WHERE conindid = i.indexrelid
                   AND conrelid = i.indrelid)
           FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
           WHERE i.indrelid = to_regclass(%s) ORDER BY c.relname""",
        (table,),
    )
    return [
        (name, primary, unique, definition.split(" USING ", 1)[1], constraint)
        for name, primary, unique, definition, constraint in cur.fetchall()
    ]


def _primary_key(cur: Any, table: str) -> list[str]:
    cur.execute(
        """SELECT quote_ident(a.attname) FROM pg_index AS i
           JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
           JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n""",
        (table,),
    )
    return [row[0] for row in cur.fetchall()]


def build_twin(cur: Any, spec: Spec, twin: str) -> None:
    """Create ``twin``: ``spec.table`` partitioned by range on ``spec.column``, with a DEFAULT.

    Its DEFAULT partition takes the final name (``metrics_default``), which
    the plain layout never uses.
    """
    source = spec.table
    cur.execute(
        f"CREATE TABLE {twin} (LIKE {source} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        f"INCLUDING COMMENTS) PARTITION BY RANGE ({spec.column})"
    )
    cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (source,))
    (comment,) = cur.fetchone()
    if comment is not None:
        cur.execute(f"COMMENT ON TABLE {twin} IS %s", (comment,))
    for name, primary, unique, definition, constraint in _indexes(cur, source):
        temporary = suffixed(constraint or name, TWIN_SUFFIX)
        if primary:
            # PostgreSQL requires the partition key in a partitioned table's
            # primary key: the one difference between the layouts.
            key = _primary_key(cur, source)
            if spec.column not in (column.strip('"') for column in key):
                key.append(spec.column)
            cur.execute(
                f"ALTER TABLE {twin} ADD CONSTRAINT {temporary} PRIMARY KEY ({', '.join(key)})"
            )
        else:
            kind = "UNIQUE INDEX" if unique else "INDEX"
            cur.execute(f"CREATE {kind} {temporary} ON {twin} USING {definition}")
    # Privileges granted on the plain table (to the app's role, say) carry over.
    cur.execute(
        """SELECT a.privilege_type,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                       ELSE quote_ident(pg_get_userbyid(a.grantee)) END
           FROM pg_class AS c, aclexplode(c.relacl) AS a
           WHERE c.oid = to_regclass(%s) AND a.grantee <> c.relowner""",
        (source,),
    )
    for privilege, grantee in cur.fetchall():
        cur.execute(f"GRANT {privilege} ON {twin} TO {grantee}")
    cur.execute(f"CREATE TABLE {spec.default} PARTITION OF {twin} DEFAULT")


def prepare_twin(cur: Any, spec: Spec, *, keep_plain: bool) -> str:
    """Build the twin of ``spec.table`` afresh, with its partitions; its name.

    A twin left by an interrupted conversion is dropped first. It gets a
    partition for every day (month) that holds rows, and the days ahead: it
    is nobody's yet, so they are simply created in it.

    Raises:
        DatabaseError: ``keep_plain``, and the name the plain table would be
            kept under is taken.
    """
    twin = suffixed(spec.table, TWIN_SUFFIX)
    cur.execute(f"DROP TABLE IF EXISTS {twin}")
    kept = suffixed(spec.table, KEPT_SUFFIX)
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (kept,))
    if keep_plain and cur.fetchone()[0]:
        raise DatabaseError(
            f'"{kept}" already exists (kept by an earlier conversion?): drop or rename it, '
            "or convert with --drop-old"
        )
    build_twin(cur, spec, twin)
    starts = starts_with_rows(cur, spec, spec.table) + ahead(cur, spec, ahead_days(cur))
    for start in sorted(set(starts)):
        if spec.nameable(start):
            cur.execute(
                f"CREATE TABLE {spec.name(start)} PARTITION OF {twin} FOR VALUES FROM (%s) TO (%s)",
                (start, spec.next(start)),
            )
    return twin


def swap(cur: Any, spec: Spec, twin: str, *, keep: bool) -> str | None:
    """Put ``twin`` in the place of ``spec.table``; the plain table's new name, or None if dropped.

    Renames only (or a drop): short, but it needs an ACCESS EXCLUSIVE lock
    on the plain table, which the caller takes first with a lock timeout.
    """
    source = spec.table
    indexes = _indexes(cur, source)
    kept = None
    if keep:
        kept = suffixed(source, KEPT_SUFFIX)
        for name, _primary, _unique, _definition, constraint in indexes:
            if constraint is not None:
                cur.execute(
                    f"ALTER TABLE {source} RENAME CONSTRAINT {constraint} "
                    f"TO {suffixed(constraint, KEPT_SUFFIX)}"
                )
            else:
                cur.execute(f"ALTER INDEX {name} RENAME TO {suffixed(name, KEPT_SUFFIX)}")
        cur.execute(f"ALTER TABLE {source} RENAME TO {kept}")
    else:
        cur.execute(f"DROP TABLE {source}")
    cur.execute(f"ALTER TABLE {twin} RENAME TO {source}")
    for name, _primary, _unique, _definition, constraint in indexes:
        if constraint is not None:
            cur.execute(
                f"ALTER TABLE {source} RENAME CONSTRAINT {suffixed(constraint, TWIN_SUFFIX)} "
                f"TO {constraint}"
            )
        else:
            cur.execute(f"ALTER INDEX {suffixed(name, TWIN_SUFFIX)} RENAME TO {name}")
    return kept


def starts_with_rows(cur: Any, spec: Spec, table: str) -> list[datetime]:
    """The starts of the partitions ``table``'s rows belong to, by a walk of the index.

    One index probe per partition with rows (a loose index scan), not a
    scan of the table: a month of rows costs 30 probes. Arithmetic in UTC,
    whatever the session's time zone.
    """
    step = f"interval '1 {spec.unit}'"
    col = spec.column
    cur.execute(
        f"""WITH RECURSIVE found AS (
            SELECT date_trunc(%(unit)s, min({col}), 'UTC') AS start
            FROM {table} WHERE {col} >= %(first)s AND {col} < %(last)s
            UNION ALL
            SELECT (SELECT date_trunc(%(unit)s, min({col}), 'UTC') FROM {table}
                    WHERE {col} >= ((found.start AT TIME ZONE 'UTC') + {step}) AT TIME ZONE 'UTC'
                      AND {col} < %(last)s)
            FROM found WHERE found.start IS NOT NULL
        )
        SELECT extract(epoch FROM start) FROM found WHERE start IS NOT NULL""",
        {"unit": spec.unit, "first": FIRST, "last": LAST},
    )
    return [datetime.fromtimestamp(float(row[0]), timezone.utc) for row in cur.fetchall()]


def create_missing(cur: Any, spec: Spec, starts: list[datetime]) -> list[str]:
    """Create the partitions starting at ``starts`` that are missing (in one transaction)."""
    existing, default = partitions(cur, spec)
    made = []
    for start in sorted(set(starts)):
        end = spec.next(start)
        if not spec.nameable(start) or any(p.overlaps(start, end) for p in existing):
            continue
        create_partition(cur, spec, start, default)
        made.append(spec.name(start))
    return made


def ahead(cur: Any, spec: Spec, days: int) -> list[datetime]:
    """The starts of the partitions from the current one to ``days`` days ahead."""
    moment = now(cur)
    return spec.starts(moment, moment + timedelta(days=days))


def make_partitioned(cur: Any, specs: list[Spec]) -> None:
    """Make the empty plain tables the migration just created partitioned, in its transaction."""
    for spec in specs:
        twin = suffixed(spec.table, TWIN_SUFFIX)
        build_twin(cur, spec, twin)
        swap(cur, spec, twin, keep=False)


def copy_all(cur: Any, source: str, target: str) -> int:
    """Copy every row of ``source`` into ``target`` (same columns); how many."""
    cols = ", ".join(columns(cur, source))
    cur.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {source}")
    return max(cur.rowcount, 0)
