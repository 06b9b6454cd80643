"""Exceptions raised by mnemo_obs.

Each subclasses the builtin a caller would already catch, so
``except ValueError`` still works for a bad argument.
"""

from __future__ import annotations


class MnemoObsError(Exception):
    """Base class for every error mnemo_obs raises on purpose."""


class ConfigurationError(MnemoObsError, ValueError):
    """A setting is missing or has a value we cannot use."""


class DatabaseError(MnemoObsError, RuntimeError):
    """PostgreSQL could not be reached or refused what we asked of it.

    The message is one line that names the server and the cause, fit to
    print as it is.
    """


class PurgeSkipped(MnemoObsError, RuntimeError):
    """Another purge was running on the same database, so this one did not start.

    Purges run one at a time across every process and host (an advisory
    lock); the next scheduled one tries again.
    """
