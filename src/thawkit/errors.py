"""One error hierarchy for everything a user can get wrong.

The CLI turns any ``ThawkitError`` into a one-line message on stderr and exit code 2.
Messages name the problem, the offending value and the fix.
"""

from __future__ import annotations


class ThawkitError(Exception):
    """Base class: a problem with the user's input, config or environment (exit code 2)."""

    exit_code = 2


class DataError(ThawkitError):
    """A data file is missing, unreadable or inconsistent."""


class ConfigError(ThawkitError):
    """A configuration value is invalid (unknown strategy, nonsensical hyperparameter, ...)."""


class RunDirError(ThawkitError):
    """A run directory is missing or incomplete."""


def join_problems(problems: list[str]) -> str:
    """Validation collects every problem and raises once; keep the message on one line."""
    return "; ".join(problems)
