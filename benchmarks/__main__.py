"""Run the benchmarks and print one markdown report.

    python -m benchmarks            # full run (under 15 minutes)
    python -m benchmarks --quick    # smoke run, small sizes (under a minute)

PostgreSQL: MNEMO_OBS_BENCH_DSN, else a throwaway cluster started here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

from mnemo_obs import apply_schema, embedded

from ._common import Context

# Section modules, in report order. Each has run(ctx: Context) -> str.
SECTIONS: list[str] = [
    "overhead",
    "server",
    "writer",
    "sustained",
    "rollups",
    "retention",
    "partitions",
    "logs",
    "dashboard",
    "replica",
    "gauges",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)

    server = None
    dsn = os.environ.get("MNEMO_OBS_BENCH_DSN")
    if not dsn:
        server = embedded.start()
        dsn = server.url()
    apply_schema(dsn)
    ctx = Context(quick=args.quick, dsn=dsn)
    started = time.monotonic()
    print(f"# mnemo_obs benchmarks{' (quick)' if args.quick else ''}\n")
    print(
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"command: `python -m benchmarks{' --quick' if args.quick else ''}`\n"
    )
    try:
        for name in args.only or SECTIONS:
            module = importlib.import_module(f"benchmarks.{name}")
            print(module.run(ctx), "\n", flush=True)
    finally:
        if server is not None:
            server.stop()
    print(f"_Total time: {time.monotonic() - started:.0f} s_")
    return 0


if __name__ == "__main__":
    sys.exit(main())
