"""The partitioned layout: which tables are cut, how, and what the catalog says about them.

``metrics`` is cut by range on ``timestamp``, one partition a day (UTC),
named ``metrics_pYYYYMMDD``; ``metrics_rollups`` by range on ``bucket``, one
partition a month, named ``metrics_rollups_pYYYYMM`` (a month of rollups is
a few hundred thousand rows at most, and every statement of the rollup job
touches each partition it cannot prune, so fewer is cheaper). Each has a
DEFAULT partition, ``<table>_default``, so that no row is ever refused.

Everything here runs on a cursor the caller owns, inside its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

# Days of partitions kept ready after the current one, unless
# ``mnemo-obs migrate --partitioned --ahead-days N`` chose another number.
AHEAD_DAYS = 7
MAX_AHEAD_DAYS = 366
# The one-row table that holds the choice, beside the partitioned tables.
SETTINGS = "metrics_partitioning"
# Bounds Python can name (datetime covers years 1 to 9999); a row outside
# stays in the DEFAULT partition.
FIRST = datetime(1000, 1, 1, tzinfo=timezone.utc)
LAST = datetime(9999, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Spec:
    """How one table is partitioned: by range on ``column``, one partition per ``unit``."""

    table: str
    column: str
    unit: str  # "day" or "month"

    @property
    def default(self) -> str:
        """The name of its DEFAULT partition."""
        return f"{self.table}_default"

    def floor(self, moment: datetime) -> datetime:
        """The start (UTC) of the partition that holds ``moment``."""
        moment = moment.astimezone(timezone.utc)
        if self.unit == "day":
            return moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    def next(self, start: datetime) -> datetime:
        """The start of the partition after the one starting at ``start``."""
        if self.unit == "day":
            return start + timedelta(days=1)
        year, month = divmod(start.month, 12)
        return start.replace(year=start.year + year, month=month + 1)

    def name(self, start: datetime) -> str:
        """The partition's name: ``metrics_p20250131``, ``metrics_rollups_p202501``."""
        day = f"{start.day:02d}" if self.unit == "day" else ""
        return f"{self.table}_p{start.year:04d}{start.month:02d}{day}"

    def starts(self, first: datetime, last: datetime) -> list[datetime]:
        """The starts of the partitions that cover ``first`` up to ``last`` (both included)."""
        out = []
        start = self.floor(first)
        while start <= last:
            out.append(start)
            start = self.next(start)
        return out

    def nameable(self, start: datetime) -> bool:
        """Whether a partition can start there (a four-digit year)."""
        return FIRST <= start < LAST


METRICS = Spec("metrics", "timestamp", "day")
ROLLUPS = Spec("metrics_rollups", "bucket", "month")
SPECS = (METRICS, ROLLUPS)


@dataclass(frozen=True)
class Partition:
    """One range partition: its name and bounds (None: MINVALUE or MAXVALUE)."""

    name: str
    start: datetime | None
    end: datetime | None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return (self.start is None or self.start < end) and (self.end is None or start < self.end)


def relkind(cur: Any, table: str) -> str | None:
    """``"p"`` for a partitioned table, ``"r"`` for a plain one, None when missing."""
    cur.execute("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", (table,))
    row = cur.fetchone()
    return None if row is None else row[0]


def layout(cur: Any) -> str | None:
    """``"partitioned"`` or ``"plain"``: the layout of ``metrics`` (None: no such table)."""
    kind = relkind(cur, METRICS.table)
    return None if kind is None else "partitioned" if kind == "p" else "plain"


# pg_get_expr gives "FOR VALUES FROM ('2025-01-01 00:00:00+00') TO (...)", or
# "DEFAULT", with timestamps written (and read back here) in this session's
# settings; MINVALUE and MAXVALUE read as NULL. Given relation 0, not the
# partition, it opens nothing: no lock to wait for behind a LOCK TABLE.
PARTITIONS_SQL = """
SELECT c.oid::regclass::text AS name, b = 'DEFAULT' AS is_default,
       substring(b FROM 'FROM \\(''([^'']*)''\\)')::timestamptz AS lo,
       substring(b FROM 'TO \\(''([^'']*)''\\)')::timestamptz AS hi
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid,
LATERAL pg_get_expr(c.relpartbound, 0) AS b
WHERE i.inhparent = to_regclass(%(table)s)
"""


def _moment(epoch: float | None) -> datetime | None:
    # Epoch seconds, not timestamps, cross from the server: psycopg2 parses
    # timestamps only in the ISO date style, and a connection given to us
    # (a purge's) may have another.
    return None if epoch is None else datetime.fromtimestamp(float(epoch), timezone.utc)


def now(cur: Any) -> datetime:
    """The server's ``now()``."""
    cur.execute("SELECT extract(epoch FROM now())")
    return _moment(cur.fetchone()[0])  # type: ignore[return-value]


def partitions(cur: Any, spec: Spec) -> tuple[list[Partition], str | None]:
    """The range partitions of ``spec.table``, oldest first, and its DEFAULT partition's name."""
    cur.execute(
        f"SELECT name, is_default, extract(epoch FROM lo), extract(epoch FROM hi) "
        f"FROM ({PARTITIONS_SQL}) AS p ORDER BY lo NULLS FIRST, name",
        {"table": spec.table},
    )
    ranges, default = [], None
    for name, is_default, start, end in cur.fetchall():
        if is_default:
            default = name
        else:
            ranges.append(Partition(name, _moment(start), _moment(end)))
    return ranges, default


def columns(cur: Any, table: str) -> list[str]:
    """The quoted names of ``table``'s columns, in order."""
    cur.execute(
        "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    )
    return [row[0] for row in cur.fetchall()]


def ahead_days(cur: Any) -> int:
    """The days of partitions to keep ready after the current one (the stored choice)."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (SETTINGS,))
    if not cur.fetchone()[0]:
        return AHEAD_DAYS
    cur.execute(f"SELECT ahead_days FROM {SETTINGS}")
    row = cur.fetchone()
    return AHEAD_DAYS if row is None else int(row[0])


def create_settings(cur: Any, days: int | None) -> None:
    """Create the settings table if missing, and store ``days`` (None keeps the stored choice)."""
    cur.execute(
        f"""CREATE TABLE IF NOT EXISTS {SETTINGS} (
            singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
            ahead_days INTEGER NOT NULL CHECK (ahead_days BETWEEN 1 AND {MAX_AHEAD_DAYS})
        )"""
    )
    cur.execute(
        f"COMMENT ON TABLE {SETTINGS} IS 'How many days of metrics partitions mnemo_obs "
        "keeps ready ahead (mnemo-obs migrate --partitioned --ahead-days N)'"
    )
    cur.execute(
        f"INSERT INTO {SETTINGS} (ahead_days) VALUES (%(days)s) ON CONFLICT (singleton) "
        f"DO UPDATE SET ahead_days = coalesce(%(given)s, {SETTINGS}.ahead_days)",
        {"days": AHEAD_DAYS if days is None else days, "given": days},
    )


def create_partition(cur: Any, spec: Spec, start: datetime, default: str | None) -> int:
    """Create the partition starting at ``start``, moving its rows out of DEFAULT; how many.

    The partition is made as a table of its own, then attached, which takes
    only a SHARE UPDATE EXCLUSIVE lock on the parent (``CREATE TABLE ...
    PARTITION OF`` takes an ACCESS EXCLUSIVE one, which waits for every
    writer and reader, and makes them all wait behind it). PostgreSQL
    refuses to attach a range that the DEFAULT partition holds rows of, so
    they are moved into the new table first, in this same transaction, with
    DEFAULT locked meanwhile: no row is ever missing or seen twice. Call it
    in a transaction (not in autocommit); the caller commits.
    """
    end = spec.next(start)
    name = spec.name(start)
    cur.execute(f"CREATE TABLE {name} (LIKE {spec.table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    moved = 0
    if default is not None:
        # The parent first, in the mode ATTACH takes, then DEFAULT: the order
        # ATTACH itself locks them in, so no other session deadlocks with us.
        cur.execute(f"LOCK TABLE {spec.table} IN SHARE UPDATE EXCLUSIVE MODE")
        cur.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
        cols = ", ".join(columns(cur, spec.table))
        cur.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE {spec.column} >= %(start)s "
            f"AND {spec.column} < %(end)s RETURNING {cols}) "
            f"INSERT INTO {name} ({cols}) SELECT {cols} FROM moved",
            {"start": start, "end": end},
        )
        moved = max(cur.rowcount, 0)
    cur.execute(
        f"ALTER TABLE {spec.table} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
        (start, end),
    )
    return moved


def default_starts(cur: Any, spec: Spec, default: str, limit: int) -> list[datetime]:
    """The starts of the partitions that rows in ``default`` belong to (at most ``limit``)."""
    cur.execute(
        f"SELECT extract(epoch FROM start) FROM (SELECT DISTINCT date_trunc(%(unit)s, "
        f"{spec.column}, 'UTC') AS start FROM {default} WHERE {spec.column} >= %(first)s "
        f"AND {spec.column} < %(last)s) AS d ORDER BY start LIMIT %(limit)s",
        {"unit": spec.unit, "first": FIRST, "last": LAST, "limit": limit},
    )
    return [_moment(row[0]) for row in cur.fetchall()]  # type: ignore[misc]
