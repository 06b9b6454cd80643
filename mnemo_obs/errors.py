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
