"""A process with a writer and a sampler, driven over stdin, for the tests of several processes.

    python -m tests.sampler_child --dsn DSN [--redis-url URL] [--interval S]
        [--max-queue N] [--burst N]

It prints one JSON line when ready (``{"pid", "dropped"}``: ``--burst``
rows offered at once to a writer of ``--max-queue`` rows, and how many
were dropped), then answers each line on stdin: ``stats`` with the
sampler's state, ``sample`` likewise after one sample taken and written,
``stop`` (or the end of stdin) by stopping the sampler and closing the
writer, answering once more and exiting 0.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mnemo_obs import MetricsWriter
from mnemo_obs.sampler import Sampler

ROOT = Path(__file__).resolve().parent.parent


def state(sampler: Sampler) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "ticks": sampler.ticks,
        "samples": sampler.samples,
        "held": sorted(sampler.held),
        "last_writer_stats": sampler.last_writer_stats,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--max-queue", type=int, default=None)
    parser.add_argument("--burst", type=int, default=0)
    args = parser.parse_args()
    writer = MetricsWriter(args.dsn, max_queue=args.max_queue, flush_interval=0.1)
    dropped = sum(not writer.record("cache", "burst", 1.0) for _ in range(args.burst))
    sampler = Sampler(writer, redis_url=args.redis_url, interval=args.interval)
    sampler.start()
    print(json.dumps({"pid": os.getpid(), "dropped": dropped}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(state(sampler)), flush=True)
        elif line.strip() == "sample":
            writer.flush(10)  # room in a small queue for the sample's rows
            sampler.sample_once()
            writer.flush(10)
            print(json.dumps(state(sampler)), flush=True)
        elif line.strip() == "stop":
            break
    sampler.stop(10)
    writer.close(10)
    print(json.dumps(state(sampler)), flush=True)
    return 0


class Child:
    """The test's side: start ``python -m tests.sampler_child``, ask it, stop or kill it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sampler_child", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.ready = self._answer()
        self.pid: int = self.ready["pid"]

    def _answer(self, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert readable, "the sampler child did not answer"
        line = self.proc.stdout.readline()
        assert line, f"the sampler child exited ({self.proc.poll()})"
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, command: str = "stats") -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n")
        self.proc.stdin.flush()
        return self._answer()

    def sample(self) -> dict[str, Any]:
        """Have it take one sample and write it; its state after."""
        return self.ask("sample")

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        final = self._answer()
        assert self.proc.wait(30) == 0
        self.close()
        return final

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def close(self) -> None:
        """Kill it if it still runs, and close the pipes."""
        if self.proc.poll() is None:
            self.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def wait_for(self, what: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        """Ask until ``predicate(stats)`` holds; the stats that made it true."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.ask()
            if predicate(stats):
                return stats
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {stats}"
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
