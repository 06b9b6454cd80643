"""Retention never waits without a bound: locks, another purge, stop() and close() deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import falcon
import psycopg2
import pytest

from mnemo_obs import DatabaseError, db
from mnemo_obs.cli import main
from mnemo_obs.errors import PurgeSkipped
from mnemo_obs.installation import install
from mnemo_obs.retention import RetentionScheduler, purge
from mnemo_obs.retention._purge import ADVISORY_LOCK_KEY

from .recording import TIMEOUT, wait_until
from .test_retention import OLD_AGES, RECENT_AGES, ids_left, insert_aged


@contextmanager
def table_locked(dsn: str) -> Iterator[None]:
    """Another session holds ACCESS EXCLUSIVE on metrics (a migration, a VACUUM FULL)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


@contextmanager
def another_purge_running(dsn: str) -> Iterator[None]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        yield
    finally:
        conn.close()


def test_a_batch_blocked_by_a_lock_gives_up_and_says_why(dsn: str) -> None:
    insert_aged(dsn, OLD_AGES)
    with table_locked(dsn), pytest.raises(DatabaseError) as info:
        purge(dsn, older_than_days=30, lock_timeout=0.2)
    message = str(info.value)
    assert "waited more than 0.2 s for a lock" in message and "after 0 rows deleted" in message
    assert len(ids_left(dsn)) == len(OLD_AGES)


def test_a_purge_finding_another_one_running_waits_then_skips(dsn: str) -> None:
    insert_aged(dsn, OLD_AGES)
    with another_purge_running(dsn), pytest.raises(PurgeSkipped, match="another purge is running"):
        purge(dsn, older_than_days=30, lock_timeout=0.2)
    assert len(ids_left(dsn)) == len(OLD_AGES)
    assert purge(dsn, older_than_days=30) == len(OLD_AGES)  # released: runs


def test_two_purges_at_once_run_one_after_the_other(dsn: str) -> None:
    old = insert_aged(dsn, [31 + i / 1000 for i in range(3000)])
    recent = insert_aged(dsn, RECENT_AGES)
    results: list[int] = []
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def run() -> None:
        barrier.wait()
        results.append(purge(dsn, older_than_days=30, batch_size=50, lock_timeout=TIMEOUT))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert sorted(results) == [0, len(old)]  # the second waited, then found nothing left
    assert ids_left(dsn) == set(recent)


def test_cli_purge_blocked_or_skipped_is_one_line(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_aged(dsn, OLD_AGES)
    with table_locked(dsn):
        assert main(["purge", "--days", "30", "--lock-timeout", "0.2", "--dsn", dsn]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "for a lock" in err
    with another_purge_running(dsn):
        assert main(["purge", "--days", "30", "--lock-timeout", "0", "--dsn", dsn]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnemo-obs: skipped: another purge is running") and "\n" not in err


def test_scheduler_counts_a_skipped_round(dsn: str) -> None:
    insert_aged(dsn, OLD_AGES)
    scheduler = RetentionScheduler(
        dsn=dsn, older_than_days=30, first_delay=0, interval=3600, jitter=0, lock_timeout=0.1
    )
    with another_purge_running(dsn):
        scheduler.start()
        try:
            wait_until("the round to be skipped", lambda: scheduler.skipped == 1)
        finally:
            assert scheduler.stop(TIMEOUT)
    assert scheduler.last_error is None
    assert len(ids_left(dsn)) == len(OLD_AGES)


def test_a_cancel_lost_between_two_statements_is_sent_again(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job told to stop may be between two statements when the cancel comes.

    The server ignores a cancel while the backend waits for its next
    statement, so the statement that comes next (here a long sleep, as a
    lock wait would be) must meet a later cancel: the retention scheduler,
    the partition job and the rollups' job all stop through stop_job().
    """
    first_sent = threading.Event()
    real_cancel = db.cancel_backend

    def cancel_and_tell(dsn_: str, pid: int) -> None:  # the real cancel, observed
        real_cancel(dsn_, pid)
        first_sent.set()

    monkeypatch.setattr(db, "cancel_backend", cancel_and_tell)
    conn = db.connect(dsn)
    conn.autocommit = True
    pid = conn.get_backend_pid()
    outcome: list[str] = []

    def job() -> None:
        first_sent.wait(TIMEOUT)  # idle between two statements while the first cancel comes
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(3600)")
        except psycopg2.errors.QueryCanceled:
            outcome.append("cancelled")

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    try:
        assert db.stop_job(thread, dsn, lambda: pid, TIMEOUT, "test-cancel")
        assert outcome == ["cancelled"]
    finally:
        if thread.is_alive():
            real_cancel(dsn, pid)
            thread.join(TIMEOUT)
        conn.close()


def test_close_keeps_one_deadline_while_a_purge_waits_on_a_lock(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    insert_aged(dsn, OLD_AGES)
    app = falcon.App()
    with table_locked(dsn):
        handle = install(
            app,
            dsn=dsn,
            redis_url=redis_url,
            retention_days=30,
            retention_options={"first_delay": 0, "jitter": 0, "lock_timeout": 3600},
        )
        scheduler = handle.retention
        assert scheduler is not None
        wait_until("the purge to be under way", lambda: scheduler._pid is not None)
        closed: list[bool] = []
        closer = threading.Thread(target=lambda: closed.append(handle.close(timeout=1)))
        started = time.monotonic()
        closer.start()
        closer.join(TIMEOUT)
        assert closed == [True]  # nothing to flush: the writer had no rows
        assert not closer.is_alive()
        # stop() cancelled the waiting batch: the thread ended, well within TIMEOUT.
        assert time.monotonic() - started < TIMEOUT
        assert scheduler._thread is not None and not scheduler._thread.is_alive()
    assert len(ids_left(dsn)) == len(OLD_AGES)
