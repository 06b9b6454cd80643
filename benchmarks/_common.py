"""Shared helpers for the benchmark sections: context, interleaved timing, tables."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions

from mnemo_obs import schema


@dataclass
class Context:
    """What every section gets: the run size and a PostgreSQL with the schema applied."""

    quick: bool
    dsn: str  # a database with the metrics table; sections may TRUNCATE it


def truncate_metrics(dsn: str) -> None:
    """Empty the ``metrics`` table of the bench database."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE metrics")
            cur.execute("SELECT to_regclass('metrics_rollups') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("TRUNCATE metrics_rollups, metrics_rollups_pending")
                cur.execute(
                    "UPDATE metrics_rollups_state "
                    "SET covered_since = '-infinity', purged_before = NULL"
                )
    finally:
        conn.close()


@contextmanager
def raw_only_database(dsn: str) -> Iterator[str]:
    """A database beside ``dsn``'s with the metrics table and no rollup tables, dropped after.

    A writer there writes as before rollups existed: one COPY per batch.
    """
    params = psycopg2.extensions.parse_dsn(dsn)
    name = f"{params.get('dbname', 'postgres')}_raw_only"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        params["dbname"] = name
        raw_dsn = " ".join(f"{key}='{value}'" for key, value in params.items())
        conn = psycopg2.connect(raw_dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(dict(schema.migration_files())["v5_to_v6_metrics_table.sql"])
        finally:
            conn.close()
        yield raw_dsn
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def interleave(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each variant ``repeats`` times, alternating the order (A B C, C B A, ...).

    Each callable runs one repetition and returns its figure. Interleaving
    spreads the machine's noise over all variants alike.
    """
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(repeats):
        for name in names if i % 2 == 0 else reversed(names):
            results[name].append(variants[name]())
    return results


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min..max)`` of a list of figures."""
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}..{fmt.format(max(values))})"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
