"""Retention: delete old ``metrics`` rows in short batches, now or once a day.

:func:`purge` deletes the rows older than a number of days in batches, each
its own short transaction, one purge at a time across processes.
:class:`RetentionScheduler` runs it on a daemon thread about once a day; a
cron line calling ``mnemo-obs purge`` is the recommended way (see the README).
"""

from __future__ import annotations

from ._purge import LOCK_TIMEOUT, MAX_DAYS, ROLLUP_DAYS, purge
from .scheduler import RetentionScheduler

__all__ = ["LOCK_TIMEOUT", "MAX_DAYS", "ROLLUP_DAYS", "RetentionScheduler", "purge"]
