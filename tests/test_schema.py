"""The metrics schema, applied to a real PostgreSQL, is exactly the reference design's."""

from __future__ import annotations

import psycopg2
import pytest

from mnemo_obs import ConfigurationError, DatabaseError, apply_schema
from mnemo_obs.schema import METRIC_TYPES


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def test_columns_types_defaults_and_nullability(dsn: str) -> None:
    rows = query(
        dsn,
        """SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
           FROM information_schema.columns WHERE table_name = 'metrics'
           ORDER BY ordinal_position""",
    )
    assert rows == [
        ("id", "uuid", None, "NO", "gen_random_uuid()"),
        ("timestamp", "timestamp with time zone", None, "NO", "now()"),
        ("metric_type", "character varying", 50, "NO", None),
        ("metric_name", "character varying", 100, "NO", None),
        ("value", "double precision", None, "NO", None),
        ("metadata", "jsonb", None, "YES", "'{}'::jsonb"),
    ]


def test_primary_key_is_id(dsn: str, layout: str) -> None:
    rows = query(
        dsn,
        """SELECT a.attname FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = 'metrics'::regclass AND i.indisprimary ORDER BY a.attnum""",
    )
    # The partitioned layout's one difference: PostgreSQL wants the partition key in it.
    assert rows == ([("id",)] if layout == "plain" else [("id",), ("timestamp",)])


def test_five_indexes_with_their_columns(dsn: str, layout: str) -> None:
    rows = dict(
        query(dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'metrics'")
    )
    assert len(rows) == 5
    key = "(id)" if layout == "plain" else '(id, "timestamp")'
    assert rows["metrics_pkey"].endswith(f"USING btree {key}")
    assert rows["idx_metrics_type_time"].endswith('USING btree (metric_type, "timestamp" DESC)')
    assert rows["idx_metrics_time"].endswith('USING btree ("timestamp" DESC)')
    assert rows["idx_metrics_name"].endswith("USING btree (metric_name)")
    assert rows["idx_metrics_type_name_time"].endswith(
        'USING btree (metric_type, metric_name, "timestamp" DESC)'
    )


def test_constraint_accepts_each_valid_type(dsn: str) -> None:
    for metric_type in METRIC_TYPES:
        query(
            dsn,
            "INSERT INTO metrics (metric_type, metric_name, value) VALUES (%s, 'x', 1) "
            "RETURNING id",
            (metric_type,),
        )
    rows = query(dsn, "SELECT metric_type, metadata FROM metrics ORDER BY metric_type")
    assert sorted(METRIC_TYPES) == [row[0] for row in rows]
    assert all(row[1] == {} for row in rows)


def test_constraint_rejects_unknown_type(dsn: str) -> None:
    with pytest.raises(psycopg2.errors.CheckViolation, match="valid_metric_type"):
        query(
            dsn,
            "INSERT INTO metrics (metric_type, metric_name, value) VALUES ('bogus', 'x', 1) "
            "RETURNING id",
        )


def test_comments_on_table_and_columns(dsn: str) -> None:
    table = query(dsn, "SELECT obj_description('metrics'::regclass, 'pg_class')")[0][0]
    assert "Performance metrics" in table
    columns = dict(
        query(
            dsn,
            """SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a
               WHERE a.attrelid = 'metrics'::regclass AND a.attnum > 0""",
        )
    )
    for name in ("timestamp", "metric_type", "metric_name", "value", "metadata"):
        assert columns[name], f"column {name} has no comment"


def test_applying_twice_is_a_no_op(dsn: str) -> None:
    query(
        dsn,
        "INSERT INTO metrics (metric_type, metric_name, value) VALUES ('api', 'x', 1) RETURNING id",
    )
    files = ["v5_to_v6_metrics_table.sql", "v6_to_v7_metrics_rollups.sql"]
    covered = query(dsn, "SELECT covered_since FROM metrics_rollups_state")
    assert apply_schema(dsn) == files
    assert apply_schema(dsn) == files
    assert query(dsn, "SELECT count(*) FROM metrics") == [(1,)]
    assert query(dsn, "SELECT count(*) FROM pg_indexes WHERE tablename = 'metrics'") == [(5,)]
    # The rollups: their own tables; applying again keeps their state.
    assert query(dsn, "SELECT count(*) FROM pg_indexes WHERE tablename = 'metrics_rollups'") == [
        (2,)
    ]
    assert query(dsn, "SELECT covered_since FROM metrics_rollups_state") == covered
    assert len(covered) == 1


def test_missing_dsn_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNEMO_OBS_DSN", raising=False)
    with pytest.raises(ConfigurationError, match="MNEMO_OBS_DSN"):
        apply_schema()


def test_invalid_dsn_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="invalid DSN"):
        apply_schema("host=127.0.0.1 this is not a dsn")


def test_refused_connection_is_a_database_error() -> None:
    from .servers import free_port

    with pytest.raises(DatabaseError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:"):
        apply_schema(f"postgresql://postgres@127.0.0.1:{free_port()}/x")
