"""Guards against the classic fine-tuning pitfalls. Each guard is a small module that returns
``Finding``s; warnings by default, errors with ``--strict``."""

from thawkit.guards.base import Finding, GuardError, GuardReport

__all__ = ["Finding", "GuardError", "GuardReport"]
