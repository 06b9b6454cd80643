"""Reading a window of requests: from rollups at any size, from raw rows when it is small.

A window runs from a start rounded to its grain (the minute up to a day,
the hour up to a week, the day beyond) to now, both stated in every answer.
Counts, errors, sums and extremes are exact from the rollups for any window.
Percentiles are exact (``percentile_cont`` over the raw rows) when the
window holds at most :data:`EXACT_MAX_ROWS` rows and its raw rows are all
there, and otherwise merged from the rollups' histograms, within
:data:`~mnemo_obs.rollups.histogram.RELATIVE_ERROR`.

Everything here runs on one cursor in one REPEATABLE READ transaction, so
the rollups, the pending rows and the raw rows are read from one snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from . import histogram, sql

# percentile_cont sorts the window's rows: ~0.4 µs a row here, so 50,000 rows
# cost about 20 ms (python -m benchmarks --only rollups).
EXACT_MAX_ROWS = 50_000
FRACTIONS = (0.5, 0.95, 0.99)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def grain_of(hours: float) -> int:
    """The seconds a window of ``hours`` is rounded to: minute, hour or day."""
    return 60 if hours <= 24 else 3600 if hours <= 168 else 86400


def normalise_hours(hours: float) -> float:
    """``hours`` rounded to its grain (at least one grain): the window a read covers."""
    grain = grain_of(hours)
    return max(grain, round(hours * 3600.0 / grain) * grain) / 3600.0


@dataclass(frozen=True)
class Window:
    """A window of reads: its start and end, and what the rollups cover."""

    hours: float
    start: datetime
    end: datetime
    rollups: bool  # the rollup tables exist
    covered_since: datetime | None  # rollups complete from here
    purged_before: datetime | None  # raw rows complete from here

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 1.0)

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"start": self.start, **extra}

    def describe(self) -> dict[str, Any]:
        return {
            "window_start": self.start.isoformat(),
            "window_end": self.end.isoformat(),
        }


def open_window(cur: Any, hours: float) -> Window:
    """Begin the read's snapshot and fix its window (the database's clock)."""
    cur.execute(
        "SELECT now(), to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
        (sql.STATE, sql.PENDING),
    )
    now, has_state, has_pending = cur.fetchone()
    covered = purged = None
    if has_state:
        cur.execute(
            "SELECT CASE WHEN covered_since > '-infinity' THEN covered_since END, "
            f"purged_before FROM {sql.STATE}"
        )
        row = cur.fetchone()
        if row is not None:
            covered, purged = row
    hours = normalise_hours(hours)
    grain = grain_of(hours)
    since = (now - timedelta(hours=hours) - _EPOCH).total_seconds()
    start = _EPOCH + timedelta(seconds=math.floor(since / grain) * grain)
    return Window(hours, start, now, has_state and has_pending, covered, purged)


def _filters(service: str | None, endpoint: str | None) -> str:
    text = ""
    if service is not None:
        text += " AND service = %(service)s"
    if endpoint is not None:
        text += " AND endpoint = %(endpoint)s"
    return text


def source(level: int, widths: tuple[int, ...], filters: str) -> str:
    """The rollup rows of one level that make up the window, with the pending rows.

    A row counts when its bucket starts in the window and it is not rolled
    up, or it is but its parent is not read (not in ``widths``, or starting
    before the window): each request is counted once.
    """
    # As a union of index range scans: the rows not rolled up (few: a
    # partial index), and per width the rolled-up rows of the window's first
    # parent bucket, which starts before the window (a short range).
    listed = ", ".join(str(width) for width in widths)
    parts = [
        f"SELECT {sql.COLUMNS} FROM {sql.TABLE} WHERE NOT rolled_up AND level = {level} "
        f"AND bucket >= %(start)s AND width IN ({listed}){filters}"
    ]
    for width in widths:
        parent = sql.PARENT.get(width)
        if width not in sql.PARENT:
            continue  # days are never rolled up
        where = f"rolled_up AND level = {level} AND width = {width} AND bucket >= %(start)s"
        if parent in widths:
            where += f" AND bucket < {sql.ceil_sql('%(start)s::timestamptz', parent)}"
        parts.append(f"SELECT {sql.COLUMNS} FROM {sql.TABLE} WHERE {where}{filters}")
    parts.append(
        f"SELECT {sql.COLUMNS} FROM ({sql.minutes_select(sql.PENDING)}) AS pending "
        f"WHERE level = {level} AND bucket >= %(start)s{filters}"
    )
    union = "\n    UNION ALL\n    ".join(parts)
    return f"(\n    {union}\n) AS r"


@dataclass
class Group:
    """One group of a read (the window, an endpoint, a point): totals and histogram."""

    count: int = 0
    errors: int = 0
    total_ms: float = 0.0
    low: float | None = None
    high: float | None = None
    bins: list[tuple[int, int]] | None = None
    exact: list[float | None] | None = None  # percentiles from raw rows

    def percentiles(self) -> list[float | None]:
        if self.exact is not None:
            return self.exact
        return histogram.quantiles(self.bins or [], FRACTIONS, self.low, self.high)


def _grouping(keys: tuple[str, ...], extra: int = 0) -> tuple[str, str]:
    select = ", ".join(keys) + ", " if keys else ""
    count = len(keys) + extra
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(count))}" if count else ""
    return select, group


def rollup_totals(
    cur: Any, window: Window, rows: str, keys: tuple[str, ...], params: dict[str, Any]
) -> dict[tuple[Any, ...], Group]:
    """Exact totals per ``keys`` (SQL expressions over the rollup rows ``rows``)."""
    select, group = _grouping(keys)
    cur.execute(
        f"SELECT {select}sum(count), sum(error_count), sum(sum_ms), min(min_ms), max(max_ms) "
        f"FROM {rows}{group}",
        params,
    )
    groups: dict[tuple[Any, ...], Group] = {}
    for row in cur.fetchall():
        count, errors, total, low, high = row[len(keys) :]
        if count:
            groups[tuple(row[: len(keys)])] = Group(int(count), int(errors), total, low, high, [])
    return groups


def rollup_bins(
    cur: Any,
    groups: dict[tuple[Any, ...], Group],
    rows: str,
    keys: tuple[str, ...],
    params: dict[str, Any],
) -> None:
    """Merge the histograms of ``rows`` into ``groups``."""
    if not groups:
        return
    _select, group = _grouping(keys, 1)
    # unnest in the select list (the arrays in step) runs faster than in
    # FROM; no ORDER BY, so PostgreSQL may hash (bins are sorted here).
    inner = ", ".join(f"{key} AS k{i}" for i, key in enumerate(keys))
    outer = ", ".join(f"k{i}" for i in range(len(keys)))
    cur.execute(
        f"SELECT {outer + ', ' if keys else ''}bin, sum(n)::bigint FROM "
        f"(SELECT {inner + ', ' if keys else ''}unnest(r.bins) AS bin, unnest(r.counts) AS n "
        f"FROM {rows}) AS u{group}",
        params,
    )
    for row in cur.fetchall():
        found = groups.get(tuple(row[: len(keys)]))
        if found is not None and found.bins is not None:
            found.bins.append((row[-2], int(row[-1])))
    for found in groups.values():
        if found.bins:
            found.bins.sort()


@dataclass(frozen=True)
class Plan:
    """How to read a window: exact from raw rows, or from the rollups over ``window``."""

    exact: bool
    window: Window  # the window the answer covers


def plan(
    cur: Any,
    window: Window,
    *,
    level: int,
    service: str | None = None,
    endpoint: str | None = None,
) -> Plan:
    """Decide between raw rows (a small window, all there) and the rollups.

    When raw rows older than the rollups' coverage are in the window
    (written before the upgrade, or by other tools, and not rebuilt) and the
    window is too large to read raw, the answer covers what the rollups
    cover, and the window it states starts there.
    """
    if not window.rollups:
        return Plan(True, window)
    uncovered = uncovered_rows(cur, window, EXACT_MAX_ROWS + 1)
    covered = window
    if uncovered and window.covered_since is not None:
        # The minute the coverage began in is only partly covered: from the next.
        since = (window.covered_since - _EPOCH).total_seconds()
        covered = replace(window, start=_EPOCH + timedelta(seconds=math.ceil(since / 60) * 60))
    rows = source(level, sql.WIDTHS, _filters(service, endpoint))
    cur.execute(
        f"SELECT coalesce(sum(count), 0) FROM {rows}",
        covered.params(service=service, endpoint=endpoint),
    )
    total = int(cur.fetchone()[0]) + uncovered
    if total <= EXACT_MAX_ROWS and raw_is_complete(window):
        return Plan(True, window)
    return Plan(False, covered)


def read(
    cur: Any,
    chosen: Plan,
    *,
    level: int,
    keys: tuple[str, ...] = (),
    raw_keys: tuple[str, ...] = (),
    widths: tuple[int, ...] = sql.WIDTHS,
    service: str | None = None,
    endpoint: str | None = None,
) -> dict[tuple[Any, ...], Group]:
    """The groups of the planned window: ``keys`` group the rollup rows, ``raw_keys`` raw rows."""
    window = chosen.window
    if chosen.exact:
        return raw_groups(cur, window, keys=raw_keys, service=service, endpoint=endpoint)
    rows = source(level, widths, _filters(service, endpoint))
    params = window.params(service=service, endpoint=endpoint)
    groups = rollup_totals(cur, window, rows, keys, params)
    rollup_bins(cur, groups, rows, keys, params)
    return groups


def raw_is_complete(window: Window) -> bool:
    """Whether the raw rows of the window are all there (no purge cut into it)."""
    return window.purged_before is None or window.purged_before <= window.start


def uncovered_rows(cur: Any, window: Window, limit: int) -> int:
    """Raw api rows of the window older than the rollups' coverage, counted up to ``limit``."""
    if window.covered_since is None or window.covered_since <= window.start:
        return 0
    cur.execute(
        "SELECT count(*) FROM (SELECT 1 FROM metrics WHERE metric_type = 'api' "
        "AND timestamp >= %(start)s AND timestamp < %(covered)s LIMIT %(limit)s) AS x",
        window.params(covered=window.covered_since, limit=limit),
    )
    return int(cur.fetchone()[0])


RAW_FILTER = (
    "metric_type = 'api' AND timestamp >= %(start)s "
    "AND value < 'Infinity'::float8 AND value > '-Infinity'::float8"
)
RAW_SERVICE = " AND coalesce(metadata->>'service', '') = %(service)s"
RAW_ENDPOINT = " AND metric_name = %(endpoint)s"


def raw_filter(service: str | None, endpoint: str | None) -> str:
    """The WHERE clause of the window's raw api rows (finite values only)."""
    return (
        RAW_FILTER
        + (RAW_SERVICE if service is not None else "")
        + (RAW_ENDPOINT if endpoint is not None else "")
    )


def raw_groups(
    cur: Any,
    window: Window,
    *,
    keys: tuple[str, ...] = (),
    service: str | None = None,
    endpoint: str | None = None,
) -> dict[tuple[Any, ...], Group]:
    """The same groups as :func:`rollup_groups`, exact, from the raw rows (a small window)."""
    select, group = _grouping(keys)
    # jsonb comparison never raises: a JSON number >= 400 counts, a string does not.
    cur.execute(
        f"SELECT {select}count(*), count(*) FILTER (WHERE metadata->'status_code' >= "
        "'400'::jsonb), sum(value), min(value), max(value), "
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value) "
        f"FROM metrics WHERE {raw_filter(service, endpoint)}{group}",
        window.params(service=service, endpoint=endpoint),
    )
    groups = {}
    for row in cur.fetchall():
        count, errors, total, low, high, exact = row[len(keys) :]
        if count:
            groups[tuple(row[: len(keys)])] = Group(
                int(count), int(errors), total, low, high, None, list(exact)
            )
    return groups


def precision(exact: bool) -> dict[str, Any]:
    """The keys that say how exact the percentiles of an answer are."""
    if exact:
        return {"percentiles": "exact", "relative_error": 0}
    return {"percentiles": "approximate", "relative_error": histogram.RELATIVE_ERROR}


def services(cur: Any, window: Window, exact: bool) -> list[str]:
    """The service names seen in the window, sorted ("": requests of no service)."""
    if exact or not window.rollups:
        cur.execute(
            "SELECT DISTINCT coalesce(metadata->>'service', '') FROM metrics "
            f"WHERE {raw_filter(None, None)} ORDER BY 1",
            window.params(),
        )
    else:
        cur.execute(
            f"SELECT DISTINCT service FROM {source(0, sql.WIDTHS, '')} ORDER BY 1",
            window.params(),
        )
    return [row[0] for row in cur.fetchall()]


def last_minute(cur: Any, window: Window, service: str | None = None) -> dict[str, Any]:
    """Requests a second over the last whole minute (the current one is still filling)."""
    now = (window.end - _EPOCH).total_seconds()
    start = _EPOCH + timedelta(seconds=math.floor(now / 60) * 60 - 60)
    if window.rollups:
        minute = replace(window, start=start)
        rows = source(0, (60,), _filters(service, None))
        groups = rollup_totals(cur, minute, rows, ("bucket",), minute.params(service=service))
        group = groups.get((start,))
        count = group.count if group is not None else 0
    else:
        cur.execute(
            f"SELECT count(*) FROM metrics WHERE {raw_filter(service, None)} "
            "AND timestamp < %(until)s",
            {"start": start, "until": start + timedelta(minutes=1), "service": service},
        )
        count = int(cur.fetchone()[0])
    return {"start": start.isoformat(), "requests_per_second": round(count / 60.0, 2)}
