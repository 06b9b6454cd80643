"""Shared helpers for the benchmark sections: context, interleaved timing, tables."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg2


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
    finally:
        conn.close()


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
