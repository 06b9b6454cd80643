"""The app the reliability tests serve in a subprocess: ``python -m tests.reliability_app``.

The demo app of ``mnemo-obs serve`` with :func:`mnemo_obs.install`, on
waitress, with the writer and summary settings a fault test needs (a small
queue, a short summary cache) as flags. It prints ``READY <port>`` once it
listens, serves until SIGTERM or SIGINT, then closes the installation and
prints ``STATS <json>``: the writer's final counters and whether ``close()``
wrote everything. Exit status 0 when it did, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from types import FrameType

import waitress
import waitress.wasyncore

from mnemo_obs.demo import make_app
from mnemo_obs.installation import install
from mnemo_obs.serving import bind as _bind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability_app")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--token")
    parser.add_argument("--max-queue", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--cache-ttl", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--cpu", type=int, help="pin the process to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # before any thread starts: they all inherit it

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt  # waitress's loop stops on it

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = make_app()
    installation = install(
        app,
        dsn=args.dsn,
        redis_url=args.redis_url,
        token=args.token,
        max_queue=args.max_queue,
        batch_size=args.batch_size,
        cache_ttl=args.cache_ttl,
    )
    socket_map: dict[int, object] = {}
    server = waitress.create_server(
        app, map=socket_map, sockets=[_bind("127.0.0.1", 0)], threads=args.threads
    )
    print(f"READY {server.effective_port}", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.task_dispatcher.shutdown()
        waitress.wasyncore.close_all(socket_map)
        flushed = installation.close(10.0)
    stats = installation.writer.stats()
    print("STATS " + json.dumps({"flushed": flushed, **stats}), flush=True)
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
