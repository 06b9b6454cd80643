"""The SQL of rollups: minutes from raw rows, merging rows, rolling each width up.

One aggregation, :func:`minutes_select`, turns raw rows into per-minute
rollup rows, for the background job (pending rows), for the reads (pending
rows not yet moved) and for ``mnemo-obs rollup --rebuild`` (rows of
``metrics``), so all three agree exactly.
"""

from __future__ import annotations

import itertools

from .histogram import bin_sql

TABLE = "metrics_rollups"
STATE = "metrics_rollups_state"
PENDING = "metrics_rollups_pending"
# The widths of rollup buckets, each a whole number of the one before: a
# minute, a quarter of an hour, an hour, six hours, a day. A read of a
# window takes the coarsest rows that fit (a 30-day time series reads 120
# six-hour rows, not 43,200 minutes).
WIDTHS = (60, 900, 3600, 21600, 86400)
PARENT = dict(itertools.pairwise(WIDTHS))


def floor_sql(value: str, width: int) -> str:
    """SQL: the start of the ``width``-second bucket (UTC, from the epoch) that holds ``value``."""
    return f"to_timestamp(floor(extract(epoch FROM {value}) / {width}) * {width})"


def ceil_sql(value: str, width: int) -> str:
    """SQL: the first ``width``-second bucket start at or after ``value``."""
    return f"to_timestamp(ceil(extract(epoch FROM {value}) / {width}) * {width})"


# The rollup of a request: a number status from the metadata, never failing
# on a row another tool wrote (a string, junk: 0, not an error).
STATUS = (
    "CASE WHEN metadata->>'status_code' ~ '^[0-9]{1,3}$' "
    "THEN (metadata->>'status_code')::int ELSE 0 END"
)
_KEY = "width, bucket, level, service, endpoint, method, status_code"
_VALUES = (
    "count, error_count, sum_ms, min_ms, max_ms, bins, counts, "
    "slowest_ms, slowest_trace_id, slowest_at, slowest_status"
)
COLUMNS = f"{_KEY}, {_VALUES}"


def minutes_select(source: str, where: str = "TRUE") -> str:
    """SELECT the minute rows (levels 0, 1, 2; :data:`COLUMNS` order) of ``source``'s api rows.

    ``source`` is a table or CTE with the columns of ``metrics``; ``where``
    narrows it (a time range for a rebuild). Non-finite latencies are left
    out, as the reads leave them out.
    """
    return f"""
SELECT 60 AS width, bucket, level, service, endpoint, method, status_code,
       sum(n) AS count, sum(errors) AS error_count, sum(total) AS sum_ms,
       min(lo) AS min_ms, max(hi) AS max_ms,
       array_agg(bin) AS bins, array_agg(n) AS counts,
       max(slow_ms) AS slowest_ms,
       (array_agg(slow_id ORDER BY slow_ms DESC))[1] AS slowest_trace_id,
       (array_agg(slow_at ORDER BY slow_ms DESC))[1] AS slowest_at,
       (array_agg(slow_status ORDER BY slow_ms DESC))[1] AS slowest_status
FROM (
    SELECT bucket,
           CASE GROUPING(endpoint, method, status_code) WHEN 0 THEN 2 WHEN 1 THEN 1 ELSE 0 END
               AS level,
           service,
           coalesce(endpoint, '') AS endpoint,
           coalesce(method, '') AS method,
           coalesce(status_code, 0) AS status_code,
           bin,
           count(*) AS n,
           count(*) FILTER (WHERE status_code >= 400) AS errors,
           sum(value) AS total, min(value) AS lo, max(value) AS hi,
           max(value) AS slow_ms,
           (array_agg(trace_id ORDER BY value DESC))[1] AS slow_id,
           (array_agg(ts ORDER BY value DESC))[1] AS slow_at,
           (array_agg(status_code ORDER BY value DESC))[1] AS slow_status
    FROM (
        SELECT date_trunc('minute', timestamp, 'UTC') AS bucket,
               coalesce(metadata->>'service', '') AS service,
               metric_name::text AS endpoint,
               coalesce(metadata->>'method', '') AS method,
               {STATUS} AS status_code,
               value,
               {bin_sql("value")} AS bin,
               metadata->>'trace_id' AS trace_id,
               timestamp AS ts
        FROM {source}
        WHERE metric_type = 'api' AND value < 'Infinity' AND value > '-Infinity' AND ({where})
    ) AS api_rows
    GROUP BY GROUPING SETS ((bucket, service, endpoint, method, status_code, bin),
                            (bucket, service, endpoint, method, bin),
                            (bucket, service, bin))
) AS per_bin
GROUP BY bucket, level, service, endpoint, method, status_code
"""


def consume_pending() -> str:
    """Move up to ``limit`` pending rows into new minute rows, in one statement; how many."""
    return f"""
WITH moved AS (
    DELETE FROM {PENDING}
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM {PENDING} LIMIT %(limit)s))
    RETURNING *
), added AS (
    INSERT INTO {TABLE} ({COLUMNS}) {minutes_select("moved")}
)
SELECT count(*) FROM moved"""


def minutes_from_metrics() -> str:
    """INSERT the minute rows of the api rows of ``metrics`` in [``start``, ``end``)."""
    return f"""
INSERT INTO {TABLE} ({COLUMNS})
{minutes_select("metrics", "timestamp >= %(start)s AND timestamp < %(end)s")}"""


def _merged(source: str, width: str, bucket: str) -> str:
    """INSERT one row per key of ``source`` (a CTE of rollup rows) into ``width`` buckets."""
    key = "bucket, level, service, endpoint, method, status_code"
    return f"""
, per_bin AS (
    SELECT {bucket} AS bucket, level, service, endpoint, method, status_code,
           u.bin, sum(u.n) AS n
    FROM {source}, unnest({source}.bins, {source}.counts) AS u(bin, n)
    GROUP BY 1, 2, 3, 4, 5, 6, 7
), hist AS (
    SELECT {key}, array_agg(bin ORDER BY bin) AS bins, array_agg(n ORDER BY bin) AS counts
    FROM per_bin GROUP BY {key}
), totals AS (
    SELECT {bucket} AS bucket, level, service, endpoint, method, status_code,
           sum(count) AS count, sum(error_count) AS error_count, sum(sum_ms) AS sum_ms,
           min(min_ms) AS min_ms, max(max_ms) AS max_ms,
           max(slowest_ms) AS slowest_ms,
           (array_agg(slowest_trace_id ORDER BY slowest_ms DESC NULLS LAST))[1]
               AS slowest_trace_id,
           (array_agg(slowest_at ORDER BY slowest_ms DESC NULLS LAST))[1] AS slowest_at,
           (array_agg(slowest_status ORDER BY slowest_ms DESC NULLS LAST))[1] AS slowest_status
    FROM {source} GROUP BY 1, 2, 3, 4, 5, 6
)
INSERT INTO {TABLE} ({COLUMNS})
SELECT {width}, {key}, count, error_count, sum_ms, min_ms, max_ms, bins, counts,
       slowest_ms, slowest_trace_id, slowest_at, slowest_status
FROM totals JOIN hist USING ({key})
"""


def merge_partials(width: int) -> str:
    """Merge the rows of ``width`` not rolled up yet that share a key into one each."""
    return f"""
WITH doubled AS (
    SELECT {_KEY} FROM {TABLE}
    WHERE width = {width} AND NOT rolled_up
    GROUP BY {_KEY} HAVING count(*) > 1
), gone AS (
    DELETE FROM {TABLE} AS r USING doubled AS d
    WHERE NOT r.rolled_up AND r.width = d.width AND r.bucket = d.bucket
      AND r.level = d.level AND r.service = d.service AND r.endpoint = d.endpoint
      AND r.method = d.method AND r.status_code = d.status_code
    RETURNING r.*
){_merged("gone", str(width), "bucket")}"""


def roll_up(width: int) -> str:
    """Roll the finished ``width`` buckets not rolled up yet into new parent rows.

    Parameter ``before``: the start of the current ``width`` bucket; the
    buckets before it are finished, and roll into their parent as it goes
    (the current hour's row holds its finished minutes). Rows that arrive
    later for a finished bucket roll up on a later run. Level 2 (per
    status) stays at the minute: marked, never rolled.
    """
    parent = PARENT[width]
    return f"""
WITH moved AS (
    UPDATE {TABLE} SET rolled_up = true
    WHERE width = {width} AND NOT rolled_up AND bucket < %(before)s
    RETURNING *
), rolled AS (
    SELECT * FROM moved WHERE level < 2
){_merged("rolled", str(parent), floor_sql("bucket", parent))}"""
