"""A benchmark server for the live logs: one route that logs a line, and the log routes.

    python -m benchmarks._serve_logs [--threads 4] [--no-handler]

Listens on 127.0.0.1, a free port, and prints ``port <n>`` once it accepts
connections. ``GET /items/{id}`` logs one INFO line (with the request's
trace id) and answers ``ok``; ``/logs`` and ``/logs/stream`` are the live
log routes (token ``bench``, streams up to an hour, at most 4, heartbeats every 0.5 s). ``GET
/_bench/stats`` answers the logs' stats. SIGTERM exits. Run by
:mod:`benchmarks.logs`, pinned with taskset.
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

from mnemo_obs.logs import LiveLogs

TOKEN = "bench"
log = logging.getLogger("bench.app")


class _Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        log.info("item %s served", item_id)
        resp.text = "ok"


class _Stats:
    def __init__(self, live: LiveLogs) -> None:
        self.live = live

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = json.dumps(self.live.stats())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._serve_logs")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--no-handler", action="store_true", help="log to a NullHandler instead (the reference)"
    )
    args = parser.parse_args(argv)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    log.setLevel(logging.INFO)
    logging.getLogger("bench").propagate = False  # nothing reaches the root's handlers
    # Heartbeats every 0.5 s: a reader the benchmark closed frees its thread
    # within a second or two, before the next run starts.
    live = LiveLogs(
        loggers=("bench",),
        token=TOKEN,
        max_streams=4,
        max_stream_seconds=3600,
        heartbeat_seconds=0.5,
        redis_url=None,
    )
    app = falcon.App()
    app.add_route("/items/{item_id}", _Item())
    app.add_route("/_bench/stats", _Stats(live))
    live.add_routes(app, "")
    if args.no_handler:
        logging.getLogger("bench").addHandler(logging.NullHandler())
    else:
        live.attach()
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=args.threads)

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
        live.close(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
