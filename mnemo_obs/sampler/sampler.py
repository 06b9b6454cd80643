"""Sampler: the Redis, PostgreSQL and host gauges and the writer's health, as rows, every interval.

Each tick (a daemon thread, ``mnemo_obs.sampler``) records this process's
``writer.stats()``, asks PostgreSQL which locks it holds (see
:mod:`.database` and :mod:`.leases`), and samples the parts whose locks it
holds: PostgreSQL's statistics, Redis's ``INFO`` (1 s timeout), the host
(psutil). Rows go through the process's writer like any other. A part that
fails is logged once when it starts and once when it ends, costs that
part's rows (a gap in the history, never an invented value), and never
ends the thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import psutil

from .. import db
from ..collectors.redis_stats import RedisCollector
from ..collectors.summary import REDIS_URL_ENV
from ..collectors.system import SystemCollector, busy_percent
from ..errors import ConfigurationError, MnemoObsError
from .database import DatabaseSide
from .rows import Rows

if TYPE_CHECKING:
    from ..writer import MetricsWriter

log = logging.getLogger("mnemo_obs.sampler")


class Sampler:
    """Record the infrastructure gauges and the writer's health every ``interval`` seconds.

    Nothing connects or starts at construction; :meth:`start` starts the
    thread, whose first tick comes one interval later. In a forked child a
    running sampler starts again, with its own thread and connections (the
    parent's lock connection is left to the parent).

    Args:
        writer: the process's :class:`~mnemo_obs.MetricsWriter`: the rows go
            through it, and its ``stats()`` are the writer health recorded.
            Its service goes in every row's metadata.
        dsn: the database whose locks decide who samples, and whose
            statistics are sampled; default the writer's.
        redis_url: the Redis to sample; None: ``$MNEMO_OBS_REDIS_URL``;
            ``""``: none.
        interval: seconds between samples (default 60): a finite number
            from 0.1 to 86,400.
        timeout: seconds a tick waits for PostgreSQL at most (default 5).
        host: this host's name in the rows (default ``socket.gethostname()``).
        disk_path: the filesystem of ``disk_*`` (default ``/``).

    Attributes:
        ticks: ticks run so far (a tick records at least the writer health).
        samples: samples taken per part (``writer``, ``redis``, ``postgres``,
            ``system``).
        held: the locks held at the last tick (``redis``, ``postgres``, ``system``).
        last_writer_stats: the ``writer.stats()`` of the last writer-health sample.
    """

    INTERVAL = 60.0
    TIMEOUT = 5.0
    # A lock holder that stops asking for this many intervals (a frozen
    # process) loses its locks: the server ends its session.
    IDLE_INTERVALS = 3
    IDLE_MIN = 10.0
    # Long enough to send the last sample before a lock is released (so the
    # next holder sees it), short enough not to hold up a shutdown.
    FLUSH_WAIT = 1.0

    def __init__(
        self,
        writer: MetricsWriter,
        *,
        dsn: str | None = None,
        redis_url: str | None = None,
        interval: float = INTERVAL,
        timeout: float = TIMEOUT,
        host: str | None = None,
        disk_path: str = "/",
    ) -> None:
        seconds = check_interval("interval", interval)
        if seconds is None:
            raise ConfigurationError("interval must be a number of seconds, not None")
        self._interval = seconds
        self._timeout = check_interval("timeout", timeout) or self.TIMEOUT
        if host is not None and (not isinstance(host, str) or not host or not host.isprintable()):
            raise ConfigurationError(f"host must be a non-empty printable str, not {host!r}")
        self._host = host or socket.gethostname()
        self._writer = writer
        self._dsn = db.resolve_dsn(dsn if dsn is not None else writer._dsn)
        url = redis_url if redis_url is not None else os.environ.get(REDIS_URL_ENV, "")
        self._system = SystemCollector(disk_path=disk_path)
        self._redis = RedisCollector.from_url(url) if url else None
        # Each part, its lock's name, and the row that says when it was last sampled.
        self._wanted = {"postgres": "postgres", "system": f"system:{self._host}"}
        self._heartbeats: dict[str, tuple[str, str, str | None]] = {
            "postgres": ("postgres", "connections_total", None),
            "system": ("system", "memory_percent", self._host),
        }
        if self._redis is not None:
            self._wanted["redis"] = f"redis:{self._redis.where}"
            self._heartbeats["redis"] = ("redis", "up", self._redis.where)
        self._closed = False
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        """(Re)make the run-time state: at construction, and in a forked child."""
        self._running = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self._db = DatabaseSide(
            self._dsn,
            wanted=self._wanted,
            heartbeats=self._heartbeats,
            interval=self._interval,
            timeout=self._timeout,
            idle_timeout=max(self.IDLE_MIN, self.IDLE_INTERVALS * self._interval),
        )
        pid = os.getpid()
        started = psutil.Process(pid).create_time()
        self._rows = Rows(
            self._writer, host=self._host, pid=pid, started=started, interval=self.interval
        )
        self._cpu_before = psutil.cpu_times()
        self._errors: dict[str, str] = {}
        self.ticks = 0
        self.samples = dict.fromkeys(("writer", "redis", "postgres", "system"), 0)
        self.held: set[str] = set()

    @property
    def interval(self) -> float:
        """Seconds between samples."""
        return self._interval

    @property
    def last_writer_stats(self) -> dict[str, Any] | None:
        """The ``writer.stats()`` of the last writer-health sample (None before the first)."""
        return self._rows.last_writer_stats

    def start(self) -> None:
        """Start the thread; a no-op while it runs.

        Raises:
            RuntimeError: the sampler was stopped (make a new one).
        """
        if self._closed:
            raise RuntimeError("this sampler was stopped; make a new one")
        if self._running:
            return
        self._running = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mnemo_obs.sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread, record a last writer-health sample, release the locks, close.

        The last sample is flushed (``FLUSH_WAIT``, 1 s at most) before the
        locks go, so the next holder sees it. Everything within ``timeout``
        seconds (None: no limit); a PostgreSQL that stopped answering is left
        behind, never waited on past it. Idempotent.

        Returns:
            True when the thread has ended.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)

        def left(cap: float | None = None) -> float | None:
            if deadline is None:
                return cap
            remaining = max(0.0, deadline - time.monotonic())
            return remaining if cap is None else min(cap, remaining)

        if self._closed:
            return self._thread is None or not self._thread.is_alive()
        self._closed = True
        self._running = False
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(left())
        ended = thread is None or not thread.is_alive()
        # A last writer-health sample says the process stopped cleanly (not
        # "gone"); none from a sampler that never ticked.
        if self.ticks and self._tick_lock.acquire(timeout=left(self.FLUSH_WAIT) or 0.0):
            try:
                self._rows.writer_health(final=True)
            finally:
                self._tick_lock.release()
        if self.held:
            self._writer.flush(left(self.FLUSH_WAIT))
        if not self._db.close(left(self.FLUSH_WAIT) or 0.0):
            log.warning("sampler: PostgreSQL did not answer; its locks go with the session")
        if self._redis is not None:
            self._redis.close()
        return ended

    def sample_once(self) -> set[str]:
        """Run one tick now, on the calling thread; the parts sampled (``writer`` at least)."""
        return self._tick()

    # -- the thread -----------------------------------------------------------

    def _loop(self) -> None:
        interval = self.interval
        due = time.monotonic() + interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                self._tick()
            except Exception:  # never let a surprise end the thread
                log.exception("sampler: unexpected error (will try again)")
            # A tick late by more than an interval (a stuck part) is not made up.
            due = max(due + interval, time.monotonic())

    def _tick(self) -> set[str]:
        with self._tick_lock:
            if self._writer._state == "closed":
                return set()  # nowhere for the rows to go: nothing to ask anyone
            self.ticks += 1
            done = {"writer"} if self._rows.writer_health() else set()
            self.samples["writer"] += len(done)
            cpu_now = psutil.cpu_times()
            cpu = busy_percent(self._cpu_before, cpu_now)
            self._cpu_before = cpu_now
            try:
                held, due, pg = self._db.ask(self._stop)
            except MnemoObsError as exc:  # no answer in time, or none at all
                if not self._stop.is_set():  # stopping cuts the wait short: no failure
                    self._note("locks", str(exc))
                self._set_held(set())
                return done
            self._note("locks", None)
            self._set_held(held)
            if isinstance(pg, str):
                self._note("postgres", pg)
            elif pg is not None:
                self._note("postgres", None)
                self._rows.postgres(*pg)
                done.add("postgres")
            if "redis" in due and self._redis is not None:
                section, counters = self._redis.collect_with_counters()
                self._note("redis", None if section["connected"] else section.get("error"))
                self._rows.redis(self._redis.where, section, counters)
                done.add("redis")
            if "system" in due:
                self._rows.system({"cpu_percent": cpu, **self._system.usage()})
                done.add("system")
            for part in done - {"writer"}:
                self.samples[part] += 1
            return done

    # -- bookkeeping ----------------------------------------------------------

    def _set_held(self, held: set[str]) -> None:
        for part in sorted(held - self.held):
            log.info("sampler: this process now samples %s (%s)", part, self._wanted[part])
        for part in sorted(self.held - held):
            log.info("sampler: this process no longer samples %s", part)
        self.held = held

    def _note(self, part: str, error: str | None) -> None:
        """Log a part that starts failing, changes its error, or recovers; not every tick."""
        previous = self._errors.get(part)
        if error == previous:
            return
        if error is None:
            del self._errors[part]
            log.info("sampler: %s works again", part)
        else:
            self._errors[part] = error
            log.warning("sampler: %s failed: %s (its gauges are missing meanwhile)", part, error)

    def _after_fork(self) -> None:
        was_running = self._running and not self._closed
        self._db.forget()  # the parent's session: neither used nor closed here
        self._reset()
        if was_running:
            self.start()

    def __repr__(self) -> str:
        return f"<Sampler every {self.interval:g} s on {self._host}, holding {sorted(self.held)}>"


def check_interval(name: str, value: object) -> float | None:
    """``value`` as seconds (0.1 to 86,400) or None; else ConfigurationError naming it."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not 0.1 <= value <= 86400:  # type: ignore[operator]
        raise ConfigurationError(
            f"{name} must be a number of seconds from 0.1 to 86400, or None, not {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


_LIVE: weakref.WeakSet[Sampler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sampler in list(_LIVE):
        sampler._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
