"""One benchmark server: waitress serving the bare app, or the same app with mnemo_obs.

    python -m benchmarks._serve bare|instrumented [--dsn DSN] [--threads 4]

Listens on 127.0.0.1, a free port, and prints ``port <n>`` once it accepts
connections. ``GET /_bench/stats`` (never recorded) flushes the writer and
answers its stats as JSON (``{}`` for the bare app). SIGTERM closes the
writer and exits. Run by :mod:`benchmarks.server`, pinned with taskset.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

import falcon
import waitress

from mnemo_obs import MetricsMiddleware, MetricsWriter


class _Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.text = "ok"


class _Stats:
    def __init__(self, writer: MetricsWriter | None) -> None:
        self.writer = writer

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        stats: dict[str, Any] = {}
        if self.writer is not None:
            stats["flushed"] = self.writer.flush(timeout=60)
            stats.update(self.writer.stats())
        resp.text = json.dumps(stats)


def make_app(writer: MetricsWriter | None) -> falcon.App:
    """The one-route app, with MetricsMiddleware when given a writer."""
    middleware = [] if writer is None else [MetricsMiddleware(writer, skip_prefixes=("/_bench/",))]
    app = falcon.App(middleware=middleware)
    app.add_route("/items/{item_id}", _Item())
    app.add_route("/_bench/stats", _Stats(writer))
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._serve")
    parser.add_argument("mode", choices=("bare", "instrumented"))
    parser.add_argument("--dsn")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    # Both sides alike: waitress logs a warning per queued request under load,
    # which costs more than this app does.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    writer = MetricsWriter(args.dsn) if args.mode == "instrumented" else None
    server = waitress.create_server(
        make_app(writer), host="127.0.0.1", port=0, threads=args.threads
    )

    def stop(signum: int, frame: Any) -> None:
        server.close()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"port {server.effective_port}", flush=True)
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        if writer is not None:
            writer.close(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
