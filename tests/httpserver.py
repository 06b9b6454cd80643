"""A real waitress server for a test, and a plain HTTP client with a timeout."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import waitress


@contextmanager
def serving(app: Any, *, threads: int = 4) -> Iterator[int]:
    """Serve ``app`` with waitress on 127.0.0.1 in a thread; yield its port."""
    socket_map: dict[int, object] = {}
    server = waitress.create_server(app, map=socket_map, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield int(server.effective_port)  # type: ignore[union-attr]
    finally:
        server.task_dispatcher.shutdown()  # type: ignore[union-attr]
        # Closed from the loop's own thread: closing its sockets from here while
        # it sits in select() makes select() fail with EBADF.
        # If the trigger's pipe is already closed (EBADF, seen rarely in CI,
        # its cause not found), the loop cannot be woken through it, and
        # select() on a closed descriptor ends it: what is left is closed below.
        with contextlib.suppress(OSError):
            server.trigger.pull_trigger(lambda: waitress.wasyncore.close_all(socket_map))  # type: ignore[union-attr]
        thread.join(10)
        if thread.is_alive() or socket_map:
            waitress.wasyncore.close_all(socket_map)
            thread.join(10)


def get(
    port: int, path: str, *, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], Any]:
    """GET ``path``: (status, headers, body as JSON when it is JSON, else bytes).

    ``timeout`` bounds the whole wait; a server that never answers fails the test.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        head = {name.lower(): value for name, value in resp.getheaders()}
    finally:
        conn.close()
    body: Any = data
    if head.get("content-type", "").startswith("application/json"):
        body = json.loads(data)
    return resp.status, head, body
