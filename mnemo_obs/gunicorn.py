"""A gunicorn hook: ``from mnemo_obs.gunicorn import worker_exit`` in ``gunicorn.conf.py``.

What gunicorn's hooks mean for mnemo_obs (docs/operations.md has the recipe):

- ``post_fork`` (in each new worker): nothing to do. Writers, log
  forwarders and trace id pools reset themselves after a fork and start
  again with the worker's first row; with ``--preload`` the app (and its
  retention thread) is set up once, in the arbiter.
- ``worker_exit`` (in the worker, after its last request, on SIGTERM, a
  HUP reload, ``max_requests`` or a timeout's SIGABRT): close everything,
  so the queued rows are written within a bound chosen here. Without the
  hook, atexit does the same with the writer's ``shutdown_timeout`` (5 s).
- ``child_exit`` (in the arbiter): nothing to do. A worker killed with
  SIGKILL (past ``graceful_timeout``, or by the OOM killer) ran no hook at
  all, and the rows it still held, a second's worth at most while the
  database keeps up, are gone with it; the arbiter cannot get them back.

Only this module's name mentions gunicorn; it does not import it.
"""

from __future__ import annotations

from typing import Any

from ._support import close_everything

# As mnemo_obs.serve(): enough for a queue of thousands of rows, well under
# gunicorn's graceful_timeout (30 s), after which the arbiter kills the worker.
FLUSH_TIMEOUT = 10.0


def close_worker(timeout: float = FLUSH_TIMEOUT) -> bool:
    """Close every installation, monitoring app and writer of this process within ``timeout``.

    Returns:
        True when every queued row was written.
    """
    return close_everything(timeout)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit`` hook: write the worker's queued rows, then stop mnemo_obs.

    Waits at most :data:`FLUSH_TIMEOUT` seconds (10); when rows had to be
    dropped (the database down or too slow), says so on gunicorn's log.
    """
    if not close_worker(FLUSH_TIMEOUT):
        server.log.warning(
            "mnemo_obs: worker %s exited with rows it could not write (counted as dropped)",
            getattr(worker, "pid", "?"),
        )
