"""A primary and a streaming standby made from it with ``pg_basebackup -R``, owned by the tests.

Both listen on 127.0.0.1 only. The primary is a throwaway cluster like any
other (``wal_level=replica`` and ten WAL senders are PostgreSQL's defaults,
and initdb's ``pg_hba.conf`` trusts replication from 127.0.0.1); the standby
starts on a copy of its base backup, so ``standby.signal`` and
``primary_conninfo`` come from ``-R``. As root, both run under the same
unprivileged account as every test cluster (see :mod:`mnemo_obs.embedded`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

import psycopg2

from mnemo_obs import apply_schema

from .servers import OwnedPostgres, truncate_metrics
from .waiting import wait_until

# A base backup of a fresh cluster takes a second or two; this bounds a stuck one.
BACKUP_TIMEOUT = 120


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first row of ``sql`` on its own autocommit connection."""
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone() if cur.description else None
    finally:
        conn.close()


def _base_backup(primary: OwnedPostgres, into: str) -> None:
    """``pg_basebackup -R`` of ``primary`` into the empty directory ``into``."""
    server = primary._server
    # The pg_basebackup beside the server's own binaries (through a symlink
    # such as /usr/local/bin/postgres): the same version.
    program = os.path.join(os.path.dirname(os.path.realpath(server.postgres)), "pg_basebackup")
    if not os.path.exists(program):
        program = shutil.which("pg_basebackup") or "pg_basebackup"
    port = str(server.settings["port"])
    # -R: standby.signal and primary_conninfo; a fast checkpoint, or the
    # backup waits for a spread one (a minute and a half here).
    args = ["-h", "127.0.0.1", "-p", port, "-U", "postgres", "-D", into, "-R", "-c", "fast"]
    proc = subprocess.run(
        [program, *args],
        capture_output=True,
        timeout=BACKUP_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_basebackup failed: {proc.stderr.decode(errors='replace')}")


class ReplicaPair:
    """A primary (schema applied) and its streaming standby; :meth:`close` stops both."""

    def __init__(self) -> None:
        self.primary = OwnedPostgres()
        self.standby: OwnedPostgres | None = None
        backup = tempfile.mkdtemp(prefix="mnemo_obs-backup-")
        try:
            apply_schema(self.primary.dsn)
            data = os.path.join(backup, "data")
            _base_backup(self.primary, data)
            self.standby = OwnedPostgres(copy_data_from=data)
            self.wait_streaming()
        except BaseException:
            self.close()
            raise
        finally:
            shutil.rmtree(backup, ignore_errors=True)

    @property
    def standby_dsn(self) -> str:
        assert self.standby is not None
        return self.standby.dsn

    def wait_streaming(self) -> None:
        """Wait until the standby is in recovery and the primary streams WAL to it."""
        wait_until(
            "the standby to be in recovery",
            lambda: query(self.standby_dsn, "SELECT pg_is_in_recovery()")[0],
        )
        wait_until(
            "the primary to stream to the standby",
            lambda: (
                query(
                    self.primary.dsn,
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                )[0]
                == 1
            ),
        )

    def wait_caught_up(self, *, applied: bool = True) -> None:
        """Wait until the standby has applied (or only received) all the primary has written."""
        (target,) = query(self.primary.dsn, "SELECT pg_current_wal_lsn()")
        position = "pg_last_wal_replay_lsn()" if applied else "pg_last_wal_receive_lsn()"
        wait_until(
            f"the standby's {position} to reach {target}",
            lambda: query(self.standby_dsn, f"SELECT {position} >= %s::pg_lsn", (target,))[0],
        )

    def pause_replay(self) -> None:
        """Stop applying WAL on the standby (it keeps receiving): its data stands still."""
        query(self.standby_dsn, "SELECT pg_wal_replay_pause()")
        wait_until(
            "replay to pause",
            lambda: (
                query(self.standby_dsn, "SELECT pg_get_wal_replay_pause_state()")[0] == "paused"
            ),
        )

    def resume_replay(self) -> None:
        query(self.standby_dsn, "SELECT pg_wal_replay_resume()")

    def reset(self) -> None:
        """Both running, replay on, ``metrics`` empty on both: what each test starts from."""
        assert self.standby is not None
        if not self.standby._server.is_alive():
            self.standby.start_server()
        self.resume_replay()
        truncate_metrics(self.primary.dsn)
        self.wait_streaming()
        self.wait_caught_up()

    def close(self) -> None:
        try:
            if self.standby is not None:
                self.standby.close()
        finally:
            self.primary.close()
