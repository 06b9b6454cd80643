"""Benchmarks for mnemo_obs: ``python -m benchmarks [--quick] [--only NAME ...]``.

Each section is a module here with ``run(ctx) -> str`` that returns a markdown
section (a heading, a table, notes). Figures are medians of interleaved
repetitions with min and max, because these machines are shared and noisy.
"""
