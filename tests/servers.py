"""Real servers for the test suite: throwaway PostgreSQL clusters and redis-server processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import redis

from mnemo_obs import embedded
from mnemo_obs.partitions import build, layout


def truncate_metrics(dsn: str) -> None:
    """Empty the ``metrics`` table of the database ``dsn`` names.

    On the partitioned layout, the partitions are put back as a fresh
    migration makes them: from today to the days ahead, and DEFAULT.
    """
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            if layout.layout(cur) == "partitioned":
                reset_partitions(cur)
            cur.execute("TRUNCATE metrics, metrics_rollups, metrics_rollups_pending")
            # Empty: the rollups cover everything, and nothing was purged.
            cur.execute(
                "UPDATE metrics_rollups_state SET covered_since = '-infinity', purged_before = NULL"
            )
    finally:
        conn.close()


def reset_partitions(cur: psycopg2.extensions.cursor) -> None:
    """Drop the partitions a test made, make those a migration makes, keep 7 days ahead."""
    cur.execute(f"UPDATE {layout.SETTINGS} SET ahead_days = %s", (layout.AHEAD_DAYS,))
    for spec in layout.SPECS:
        wanted = build.ahead(cur, spec, layout.AHEAD_DAYS)
        ranges, _default = layout.partitions(cur, spec)
        for part in ranges:
            if part.start not in wanted:
                cur.execute(f"DROP TABLE {part.name}")
        build.create_missing(cur, spec, wanted)


@contextmanager
def database_beside(dsn: str, label: str) -> Iterator[str]:
    """A new, empty database on the server of ``dsn`` (DSN yielded), dropped at the end."""
    params = psycopg2.extensions.parse_dsn(dsn)
    name = f"{label}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        params["dbname"] = name
        yield " ".join(f"{key}='{value}'" for key, value in params.items())
    finally:
        try:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnedPostgres:
    """A PostgreSQL cluster this test run owns, so it may stop and restart it.

    ``settings`` go to :func:`mnemo_obs.embedded.start` (``copy_data_from=``
    starts it on a copy of another cluster's files: a standby's base backup).
    """

    def __init__(self, **settings: Any) -> None:
        self._server = embedded.start(**settings)
        self.dsn = self._server.url()

    def stop_server(self) -> None:
        """Stop the server, keeping its data, so a later start_server() resumes it."""
        self._server.terminate()

    def start_server(self) -> None:
        self._server.start()

    def close(self) -> None:
        self._server.stop()


class ExistingPostgres:
    """A server named by MNEMO_OBS_TEST_DSN: the suite makes its own database there."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.dbname = f"mnemo_obs_test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{self.dbname}"')
        params = psycopg2.extensions.parse_dsn(admin_dsn)
        params["dbname"] = self.dbname
        self.dsn = " ".join(f"{key}='{value}'" for key, value in params.items())

    def _admin(self, sql: str) -> None:
        conn = psycopg2.connect(self.admin_dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def close(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


class RedisServer:
    """A redis-server on a free loopback port, in a temporary directory, keeping nothing."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="mnemo_obs-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_server()

    def start_server(self, *extra: str) -> None:
        log = open(os.path.join(self.dir, "redis.log"), "ab")  # noqa: SIM115
        with log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.dir,
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop_server(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)
