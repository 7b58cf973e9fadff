"""Exceptions that the command line turns into one clear line and an exit code.

Exit codes follow DESIGN.md: 0 success, 1 the work failed or found problems, 2 bad usage or bad input.
Library code raises these; only ``sie.cli`` prints them (with a traceback only under ``--debug``).
"""

from __future__ import annotations


class SieError(Exception):
    """Base class of errors meant for users. ``exit_code`` is what ``sie`` exits with."""

    exit_code = 1


class UsageError(SieError):
    """Bad usage or bad input: a flag, a config key, a value or a file that cannot be used."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file, key, type or value (or a combination of values) that is not valid."""


class WorkFailed(SieError):
    """The work itself failed, or a check found problems."""

    exit_code = 1
